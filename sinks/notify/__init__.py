"""Alertmanager-style notifications for the alerts dataflow: routing, grouping, and four channels.

    notifier = Notifier(config.notifications, external_url="http://talonflow.example")
    notifier.start()
    notifier.submit(alert)  # from a bytewax step: never blocks, never raises
    notifier.close()

`alert` is one alert in Alertmanager's webhook shape (status, labels, annotations, startsAt, endsAt,
generatorURL, fingerprint). Config: schemas/notify.py; behaviour: dispatcher.py; channels: channels.py.

Text fields are Go templates over Alertmanager's data model, with its functions and its
default.tmpl (templating.py). Silences (silences.py), inhibit rules (inhibition.py) and the
routes' time intervals hold notifications back. `pipeline_notifier(config)` is the one the flows
use: its silences are those of the `talon_silences` topic, which the console's API writes.
"""

from schemas.config import TalonflowConfig
from sinks.notify.alerts import Alert, Notification
from sinks.notify.dispatcher import Notifier, NotifyMetrics
from sinks.notify.silences import KafkaSilences, Silences

__all__ = ["Alert", "Notification", "Notifier", "NotifyMetrics", "Silences", "pipeline_notifier"]


def pipeline_notifier(config: TalonflowConfig) -> Notifier:
    """The notifier of a flow: the config's routes, links to the console, the shared silences."""
    silences = KafkaSilences(config.kafka)
    return Notifier(config.notifications, external_url=config.console.url, silences=silences)
