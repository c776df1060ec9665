"""Prometheus scraping: `scrape_configs` targets → OTLP on `otlp_metrics`, as a supervised program."""
