"""Alertmanager-style notifications for the alerts dataflow: routing, grouping, and four channels.

    notifier = Notifier(config.notifications, external_url="http://talonflow.example")
    notifier.start()
    notifier.submit(alert)  # from a bytewax step: never blocks, never raises
    notifier.close()

`alert` is one alert in Alertmanager's webhook shape (status, labels, annotations, startsAt, endsAt,
generatorURL, fingerprint). Config: schemas/notify.py; behaviour: dispatcher.py; channels: channels.py.

Templates (Slack title/text, email subject/text, PagerDuty summary) are Jinja2 over Alertmanager's
data model names: Status, Receiver, Alerts (each with Status, Labels, Annotations, StartsAt, EndsAt,
GeneratorURL, Fingerprint), Alerts.Firing, Alerts.Resolved, GroupLabels, CommonLabels,
CommonAnnotations, ExternalURL, GroupKey. Go-template syntax is not supported; the config is
rejected when it is used. Equivalents:

    {{ .GroupLabels.alertname }}              ->  {{ GroupLabels.alertname }}
    {{ .Status | toUpper }}                   ->  {{ Status | upper }}
    {{ .Alerts.Firing | len }}                ->  {{ Alerts.Firing | length }}
    {{ range .Alerts }}{{ .Annotations.summary }}{{ end }}
                                              ->  {% for a in Alerts %}{{ a.Annotations.summary }}{% endfor %}
    {{ if eq .Status "firing" }}x{{ end }}    ->  {% if Status == "firing" %}x{% endif %}
    {{ .CommonLabels.SortedPairs.Values | join " " }}
                                              ->  {{ CommonLabels | dictsort | map('last') | join(' ') }}
"""

from sinks.notify.alerts import Alert, Notification
from sinks.notify.dispatcher import Notifier, NotifyMetrics

__all__ = ["Alert", "Notification", "Notifier", "NotifyMetrics"]
