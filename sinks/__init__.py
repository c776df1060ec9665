"""Parquet partition writer, tier mover and notification channels (filled by later issues)."""
