"""Log files → OTLP log records on `otlp_logs`, exactly once across rotations, restarts and kill -9."""
