"""Schemas, topic names and config models: the single source of truth for names."""
