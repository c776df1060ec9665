"""Prometheus rule evaluation (groups, alert states, templates) and promtool's rule unit tests."""
