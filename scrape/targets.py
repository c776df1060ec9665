"""Targets of the scrape jobs: static_configs and file_sd_configs, relabeled, sharded over processes.

Labels are built as Prometheus builds them (`__address__`, `__scheme__`, `__metrics_path__`,
`__param_<name>`, `job`, then the group's labels and `relabel_configs`; `instance` defaults to
the address; `__`-prefixed labels are dropped), so a job pasted from prometheus.yml selects and
names the same targets.
"""

from __future__ import annotations

import glob
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from schemas.scrape import ScrapeConfig
from scrape.relabel import hashmod, relabel

log = logging.getLogger("scrape.targets")


@dataclass(frozen=True)
class Target:
    """One endpoint to scrape, with its final labels."""

    job: ScrapeConfig
    url: str
    labels: tuple[tuple[str, str], ...]  # target labels, `job` and `instance` included

    @property
    def instance(self) -> str:
        return dict(self.labels)["instance"]

    @property
    def identity(self) -> str:
        """Stable across restarts and processes: what the shard hash and the scrape offset use."""
        return f"{self.job.job_name}\x00{self.url}"


def _read_groups(path: Path) -> list[dict[str, Any]]:
    """A file_sd file: a list of {targets, labels}; JSON or YAML by extension, as Prometheus reads."""
    text = path.read_text()
    groups = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(groups, list):
        raise ValueError("expected a list of target groups")
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("targets", []), list):
            raise ValueError("each target group needs a `targets` list")
    return groups


class FileSd:
    """The target groups of a job's file_sd files, re-read when a file's mtime or the glob changes."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[int, list[dict[str, Any]]]] = {}

    def groups(self, job: ScrapeConfig) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for sd in job.file_sd_configs:
            for pattern in sd.files:
                for name in sorted(glob.glob(pattern)):
                    found.extend(self._file(Path(name)))
        return found

    def _file(self, path: Path) -> list[dict[str, Any]]:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return []
        cached = self._seen.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
        try:
            groups = _read_groups(path)
        except (OSError, ValueError, yaml.YAMLError) as err:
            log.error("file_sd %s: cannot use it: %s (keeping its previous targets)", path, err)
            return cached[1] if cached else []
        self._seen[path] = (mtime, groups)
        log.info("file_sd %s: %d target groups", path, len(groups))
        return groups


def _target(job: ScrapeConfig, address: str, group_labels: dict[str, str]) -> Target | None:
    labels = {
        "__address__": address,
        "__scheme__": job.scheme,
        "__metrics_path__": job.metrics_path,
        "job": job.job_name,
        **{f"__param_{k}": v[0] for k, v in job.params.items() if v},
        **group_labels,
    }
    final = relabel(labels, job.relabel_configs)
    if final is None:
        return None
    final.setdefault("instance", final["__address__"])
    query = {k: list(v) for k, v in job.params.items()}
    for key, value in final.items():
        if key.startswith("__param_"):  # as in Prometheus, a __param_ label sets that parameter
            query[key[len("__param_") :]] = [value]
    url = f"{final['__scheme__']}://{final['__address__']}{final['__metrics_path__']}"
    if query:
        url = f"{url}?{urlencode(query, doseq=True)}"
    visible = tuple(sorted((k, v) for k, v in final.items() if not k.startswith("__")))
    return Target(job, url, visible)


def discover(jobs: tuple[ScrapeConfig, ...], file_sd: FileSd, shard: int, shards: int) -> list[Target]:
    """This process' targets: all of them whose identity hashes to `shard` modulo `shards`."""
    targets: dict[str, Target] = {}
    for job in jobs:
        groups: list[dict[str, Any]] = [
            {"targets": list(s.targets), "labels": s.labels} for s in job.static_configs
        ]
        for group in [*groups, *file_sd.groups(job)]:
            labels = {str(k): str(v) for k, v in (group.get("labels") or {}).items()}
            for address in group.get("targets", []):
                target = _target(job, str(address), labels)
                if target is not None and hashmod(target.identity, shards) == shard:
                    targets.setdefault(target.identity, target)
    return list(targets.values())
