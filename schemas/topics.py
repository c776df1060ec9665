"""Kafka topics and the OTLP resource attributes that key their records (see DESIGN.md)."""

from typing import Final

SPANS_TOPIC: Final = "otlp_spans"
METRICS_TOPIC: Final = "otlp_metrics"
LOGS_TOPIC: Final = "otlp_logs"
ROLLUPS_TOPIC: Final = "talon_rollups"
ALERTS_TOPIC: Final = "talon_alerts"
HEARTBEATS_TOPIC: Final = "talon_heartbeats"

OTLP_TOPICS: Final = (SPANS_TOPIC, METRICS_TOPIC, LOGS_TOPIC)
ALL_TOPICS: Final = (*OTLP_TOPICS, ROLLUPS_TOPIC, ALERTS_TOPIC, HEARTBEATS_TOPIC)

# A record's key is "<service.name>/<service.instance.id>", so one agent's data stays on one partition.
SERVICE_NAME: Final = "service.name"
SERVICE_INSTANCE_ID: Final = "service.instance.id"
