"""The web console: fleet, services, traces, sessions, logs, alerts and comparisons on one port."""
