"""OTLP receiver: OTLP/gRPC and OTLP/HTTP in, Kafka out. Knows nothing of Parquet."""
