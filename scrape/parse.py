"""An exposition body → metric families (scrape/fast_text.py), checked and relabeled.

Text format 0.0.4 and OpenMetrics 1.0 are told apart by Content-Type, as Prometheus does. Series
are checked here as Prometheus checks them on ingestion: a repeated series (same name and labels)
keeps its first sample and counts a rejection; an invalid metric or label name fails the scrape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.samples import Sample

from schemas.prometheus import INSTANCE, JOB
from schemas.scrape import RelabelConfig
from scrape.fast_text import families
from scrape.relabel import relabel

OPENMETRICS = "application/openmetrics-text"
ACCEPT = f"{OPENMETRICS};version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"  # Prometheus' own


@dataclass
class Parsed:
    families: list[Any] = field(default_factory=list)  # prometheus_client Metric objects
    samples: int = 0  # as exposed, before metric relabeling (scrape_samples_scraped)
    series: set[int] = field(default_factory=set)  # hashes of the series kept, for series_added
    duplicates: int = 0
    dropped: int = 0  # by metric_relabel_configs


def _with_target(
    labels: dict[str, str], target: dict[str, str], attach: dict[str, str], honor_labels: bool
) -> dict[str, str]:
    """Prometheus' label merge: a scraped label that clashes with a target label becomes
    `exported_<name>`, unless honor_labels, where the scraped one wins. Only `attach` is added:
    job and instance are the resource, so samples carry them only for metric relabeling."""
    if honor_labels:
        return {**attach, **labels}
    merged = {(f"exported_{k}" if k in target else k): v for k, v in labels.items()}
    merged.update(attach)
    return merged


def parse(
    body: str,
    content_type: str,
    target: dict[str, str],
    honor_labels: bool,
    relabels: Sequence[RelabelConfig],
) -> Parsed:
    """ValueError when the body is not a valid exposition (the scrape then fails: up == 0).

    `target` are the target's labels (job and instance included), merged into every sample's."""
    result = Parsed()
    attach = target if relabels else {k: v for k, v in target.items() if k not in (JOB, INSTANCE)}
    series, add_series = result.series, result.series.add  # the loop below runs once per sample
    for family in families(body, openmetrics=content_type.startswith(OPENMETRICS)):
        kept: list[Sample] = []
        result.samples += len(family.samples)
        for sample in family.samples:
            name, labels = sample.name, sample.labels
            if attach or not labels.keys().isdisjoint(target):
                labels = _with_target(labels, target, attach, honor_labels)
            if relabels:
                relabeled = relabel({**labels, "__name__": name}, relabels)
                if relabeled is None:
                    result.dropped += 1
                    continue
                name = relabeled.pop("__name__", name)
                labels = relabeled
            key = hash((name, frozenset(labels.items())))
            if key in series:
                result.duplicates += 1
                continue
            add_series(key)
            same = name is sample.name and labels is sample.labels
            kept.append(sample if same else sample._replace(name=name, labels=labels))
        if kept:
            family.samples = kept
            result.families.append(family)
    return result
