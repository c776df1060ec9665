"""Kafka topics and the OTLP resource attributes that key their records (see DESIGN.md)."""

from typing import Final

SPANS_TOPIC: Final = "otlp_spans"
METRICS_TOPIC: Final = "otlp_metrics"
LOGS_TOPIC: Final = "otlp_logs"
ROLLUPS_TOPIC: Final = "talon_rollups"
ALERTS_TOPIC: Final = "talon_alerts"
HEARTBEATS_TOPIC: Final = "talon_heartbeats"
# The log tailer's file positions, written in the same Kafka transaction as the log records they
# cover (tailer/positions.py); compacted, so the latest per tailer is kept however idle it is.
TAILER_POSITIONS_TOPIC: Final = "talon_tailer_offsets"
# Alertmanager-style silences by id (sinks/notify/silences.py); compacted: the latest version of
# each survives restarts, read by the console's API and by every notifier.
SILENCES_TOPIC: Final = "talon_silences"

OTLP_TOPICS: Final = (SPANS_TOPIC, METRICS_TOPIC, LOGS_TOPIC)
ALL_TOPICS: Final = (
    *OTLP_TOPICS,
    ROLLUPS_TOPIC,
    ALERTS_TOPIC,
    HEARTBEATS_TOPIC,
    TAILER_POSITIONS_TOPIC,
    SILENCES_TOPIC,
)
# Settings a topic needs beyond the configured partitions, retention and record limit.
TOPIC_OVERRIDES: Final = {
    TAILER_POSITIONS_TOPIC: {"cleanup.policy": "compact"},
    SILENCES_TOPIC: {"cleanup.policy": "compact"},
}

# A record's key is "<service.name>/<service.instance.id>", so one agent's data stays on one partition.
SERVICE_NAME: Final = "service.name"
SERVICE_INSTANCE_ID: Final = "service.instance.id"
