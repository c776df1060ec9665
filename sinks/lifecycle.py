"""The tier mover: hot (local Parquet) → warm (MinIO) → cold (MinIO, recompacted) → expired.

Every pass, per dataset, under an exclusive lock on the manifest (sinks/tiers.py):
1. deletes garbage whose grace has passed, and objects no manifest refers to (a crashed pass);
2. compacts each hot partition older than `hot_for` (its many small files → one sorted zstd
   file), uploads it, verifies size and MD5 (the ETag of a single-part upload), records it in
   the manifest, and only then schedules the local files for deletion;
3. recompacts partitions older than `warm_for` into one cold object (zstd level 19);
4. expires partitions older than `cold_for`, from the manifest first, then from storage.
A step that fails (MinIO away) leaves the manifest as it was: nothing is deleted without a
verified copy, and the next pass retries. Ages count from the end of a partition's hour.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from tenacity import retry, retry_if_exception_type, wait_exponential
from tqdm import tqdm

from schemas.config import TalonflowConfig, TierPolicy
from schemas.datasets import DATASETS, Dataset
from sinks.parquet import write_options
from sinks.tiers import COLD, WARM, Manifest, Partition, StoredObject, ensure_bucket, exclusive, minio_client

log = logging.getLogger(__name__)
_WARM_LEVEL, _COLD_LEVEL = 3, 19  # zstd levels: fast for warm, dense for cold


class StoreUnavailable(Exception):
    """MinIO did not answer or did not keep what it was given; the pass stops and is retried."""


class LifecycleMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.moved_bytes = Counter(
            "talonflow_lifecycle_moved_bytes",
            "Bytes written to a tier.",
            ["dataset", "tier"],
            registry=self.registry,
        )
        self.errors = Counter(
            "talonflow_lifecycle_errors",
            "Passes that stopped on an error.",
            ["reason"],
            registry=self.registry,
        )
        self.store_up = Gauge(
            "talonflow_lifecycle_store_up", "1 when the last pass reached MinIO.", registry=self.registry
        )
        self.overdue_bytes = Gauge(
            "talonflow_lifecycle_overdue_hot_bytes",
            "Hot bytes older than hot_for still on local disk (grows while MinIO is away).",
            ["dataset"],
            registry=self.registry,
        )


def partition_age(partition: str, now: float) -> float:
    """Seconds since the end of the hour a "date=YYYY-MM-DD/hour=HH" partition holds."""
    date, hour = partition.split("/")
    start = datetime.strptime(f"{date[5:]} {hour[5:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    return now - start.timestamp() - 3600


def hot_files(data_dir: Path, dataset: str, manifest: Manifest) -> dict[str, list[Path]]:
    """Local files per partition that readers see as hot: all but those already moved."""
    found: dict[str, list[Path]] = {}
    for path in sorted((data_dir / dataset).glob("date=*/hour=*/*.parquet")):
        partition = f"{path.parent.parent.name}/{path.parent.name}"
        entry = manifest.partitions.get(partition)
        if entry is None or path.name not in entry.moved:
            found.setdefault(partition, []).append(path)
    return found


@dataclass
class Compacted:
    path: Path
    rows: int
    size: int
    md5: str
    sha256: str


def compact(tables: Iterable[pa.Table], dataset: Dataset, folder: Path, level: int) -> Compacted:
    """One sorted zstd file from many tables, with the checksums its upload is verified against.

    Then pyarrow's pool (mimalloc) gives the hour's buffers back to the system: it kept them, and
    the mover, idle until the next hour closes, stayed 125 MB larger after a compaction than before
    it (`bench.soak --hot-for 60`, README "Soak")."""
    table = pa.concat_tables(list(tables), promote_options="default")
    table = table.sort_by([(column, "ascending") for column in dataset.sort_by])
    path, rows = folder / "compacted.parquet", table.num_rows
    pq.write_table(table, path, **write_options(table.schema, 128 * 1024, level))
    del table
    pa.default_memory_pool().release_unused()
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
    return Compacted(path, rows, path.stat().st_size, md5.hexdigest(), sha.hexdigest())


class Mover:
    def __init__(
        self, config: TalonflowConfig, client: Minio, metrics: LifecycleMetrics, progress: bool
    ) -> None:
        self._config, self._client, self._metrics, self._progress = config, client, metrics, progress
        self._bucket = config.minio.bucket
        self._data = config.data_dir

    # -- one pass ---------------------------------------------------------------------------------
    def run_pass(self) -> dict[str, int]:
        """Move what is due; returns how many partitions changed tier, per dataset."""
        changed: dict[str, int] = {}
        with exclusive(self._data), tempfile.TemporaryDirectory(dir=self._data / "_tiers") as scratch:
            for name in DATASETS:  # first: this matters most when MinIO is away
                self._report_overdue(name, self._config.lifecycle.policies[name])
            try:
                apply_bucket_rules(self._config, self._client)
                for name, dataset in DATASETS.items():
                    changed[name] = self._dataset(
                        dataset, self._config.lifecycle.policies[name], Path(scratch)
                    )
            except StoreUnavailable:
                self._metrics.store_up.set(0)
                raise
        self._metrics.store_up.set(1)
        return changed

    def _report_overdue(self, dataset: str, policy: TierPolicy) -> None:
        """Hot bytes that should have moved already: grows while MinIO is away."""
        now = time.time()
        hot = hot_files(self._data, dataset, Manifest.load(self._data, dataset))
        overdue = [f for p, files in hot.items() if partition_age(p, now) >= policy.hot_for for f in files]
        self._metrics.overdue_bytes.labels(dataset).set(sum(f.stat().st_size for f in overdue))

    def _dataset(self, dataset: Dataset, policy: TierPolicy, scratch: Path) -> int:
        manifest = Manifest.load(self._data, dataset.name)
        now = time.time()
        hot = hot_files(self._data, dataset.name, manifest)  # garbage below is never among these
        self._collect_garbage(dataset, manifest, now)
        self._delete_orphans(dataset, manifest)
        due_warm = [p for p in hot if policy.hot_for <= partition_age(p, now) < policy.cold_for]
        due_cold = [
            p
            for p, entry in manifest.partitions.items()
            if policy.warm_for <= partition_age(p, now) < policy.cold_for
            and (any(o.tier == WARM for o in entry.objects) or len(entry.objects) > 1)
            and p not in due_warm
        ]
        due_gone = sorted(p for p in {*hot, *manifest.partitions} if partition_age(p, now) >= policy.cold_for)
        steps = (
            [(p, "warm") for p in due_warm]
            + [(p, "cold") for p in due_cold]
            + [(p, "gone") for p in due_gone]
        )
        for partition, step in tqdm(
            steps, desc=dataset.name, unit="partition", disable=not (self._progress and steps)
        ):
            if step == "warm":
                self._to_warm(dataset, partition, hot[partition], manifest, scratch)
            elif step == "cold":
                self._to_cold(dataset, partition, manifest, scratch)
            else:
                self._expire(partition, hot.get(partition, []), manifest)
            manifest.save(self._data, dataset.name)
        return len(steps)

    # -- steps ------------------------------------------------------------------------------------
    def _to_warm(
        self, dataset: Dataset, partition: str, files: list[Path], manifest: Manifest, scratch: Path
    ) -> None:
        compacted = compact((pq.read_table(f) for f in files), dataset, scratch, _WARM_LEVEL)
        stored = self._upload(compacted, f"{WARM}/{dataset.name}/{partition}/{compacted.sha256[:24]}.parquet")
        entry = manifest.partitions.setdefault(partition, Partition())
        entry.objects.append(stored)
        entry.moved.extend(f.name for f in files)
        for path in files:
            manifest.discard(str(path), local=True, grace=self._config.lifecycle.grace)
        self._metrics.moved_bytes.labels(dataset.name, WARM).inc(compacted.size)

    def _to_cold(self, dataset: Dataset, partition: str, manifest: Manifest, scratch: Path) -> None:
        entry = manifest.partitions[partition]
        tables = []
        for index, stored in enumerate(entry.objects):
            local = scratch / f"part-{index}.parquet"
            self._call(self._client.fget_object, self._bucket, stored.key, str(local))
            tables.append(pq.read_table(local))
        compacted = compact(tables, dataset, scratch, _COLD_LEVEL)
        stored_cold = self._upload(
            compacted, f"{COLD}/{dataset.name}/{partition}/{compacted.sha256[:24]}.parquet"
        )
        superseded = [o.key for o in entry.objects if o.key != stored_cold.key]
        entry.objects = [stored_cold]
        for key in superseded:
            manifest.discard(key, local=False, grace=self._config.lifecycle.grace)
        self._metrics.moved_bytes.labels(dataset.name, COLD).inc(compacted.size)

    def _expire(self, partition: str, files: list[Path], manifest: Manifest) -> None:
        entry = manifest.partitions.pop(partition, Partition())
        grace = self._config.lifecycle.grace
        for stored in entry.objects:
            manifest.discard(stored.key, local=False, grace=grace)
        for path in files:
            manifest.discard(str(path), local=True, grace=grace)

    def _upload(self, compacted: Compacted, key: str) -> StoredObject:
        """Put, then check that MinIO holds exactly these bytes: size and MD5 (single-part ETag)."""
        size = compacted.size
        with compacted.path.open("rb") as handle:
            self._call(
                self._client.put_object,
                self._bucket,
                key,
                handle,
                size,
                content_type="application/vnd.apache.parquet",
                part_size=max(size, 5 * 1024**2),  # one part, so the ETag is the MD5 of the bytes
                metadata={"x-amz-meta-sha256": compacted.sha256},
            )
        stat = self._call(self._client.stat_object, self._bucket, key)
        if stat.size != size or (stat.etag or "").strip('"') != compacted.md5:
            raise StoreUnavailable(f"{key}: stored copy does not match (size {stat.size}, etag {stat.etag})")
        return StoredObject(key, compacted.rows, size)

    # -- clean-up ---------------------------------------------------------------------------------
    def _collect_garbage(self, dataset: Dataset, manifest: Manifest, now: float) -> None:
        due = [g for g in manifest.garbage if g.after <= now]
        if not due:
            return
        for garbage in due:
            if garbage.local:
                path = Path(garbage.path)
                path.unlink(missing_ok=True)
                for folder in (path.parent, path.parent.parent):  # hour=, then date= when empty
                    with_content = folder.exists() and any(folder.iterdir())
                    if folder.exists() and not with_content:
                        folder.rmdir()
            else:
                self._call(self._client.remove_object, self._bucket, garbage.path)
        manifest.garbage = [g for g in manifest.garbage if g.after > now]
        manifest.save(self._data, dataset.name)

    def _delete_orphans(self, dataset: Dataset, manifest: Manifest) -> None:
        """Objects no manifest names: uploads of a pass that died before recording them."""
        referenced = manifest.referenced_keys()
        for tier in (WARM, COLD):
            listing = self._call(
                self._client.list_objects, self._bucket, f"{tier}/{dataset.name}/", recursive=True
            )
            for item in self._call(list, listing):
                if item.object_name not in referenced:
                    self._call(self._client.remove_object, self._bucket, item.object_name)

    def _call(self, function, *args, **kwargs):  # type: ignore[no-untyped-def]
        """A MinIO call; any failure to reach or satisfy the store becomes StoreUnavailable."""
        try:
            return function(*args, **kwargs)
        except Exception as err:  # urllib3, S3Error, OSError: all mean "not now"
            raise StoreUnavailable(f"minio: {err}") from err


def bucket_rules(config: TalonflowConfig) -> LifecycleConfig | None:
    """MinIO ILM rules that expire tier objects even if this service is down: a backstop a day
    behind the service's own, exact expiry. Only policies of whole days can be expressed."""
    rules = []
    for name, policy in sorted(config.lifecycle.policies.items()):
        for tier, created_at_age in ((WARM, policy.hot_for), (COLD, policy.warm_for)):
            days = math.ceil((policy.cold_for - created_at_age) / 86400) + 1
            if policy.cold_for >= 86400:
                rules.append(
                    Rule(
                        ENABLED,
                        rule_filter=Filter(prefix=f"{tier}/{name}/"),
                        rule_id=f"talonflow-{tier}-{name}",
                        expiration=Expiration(days=days),
                    )
                )
    return LifecycleConfig(rules) if rules else None


def apply_bucket_rules(config: TalonflowConfig, client: Minio) -> None:
    rules = bucket_rules(config)
    try:
        ensure_bucket(config.minio)
        if rules is None:
            client.delete_bucket_lifecycle(config.minio.bucket)
        else:
            client.set_bucket_lifecycle(config.minio.bucket, rules)
    except S3Error as err:
        if err.code != "NoSuchLifecycleConfiguration":  # nothing to delete is fine
            raise StoreUnavailable(f"minio: {err}") from err
    except Exception as err:  # see Mover._call
        raise StoreUnavailable(f"minio: {err}") from err


def clear_scratch(data_dir: Path) -> None:
    """Temporary folders of a pass that was killed."""
    for folder in (data_dir / "_tiers").glob("tmp*"):
        shutil.rmtree(folder, ignore_errors=True)


def serve(config: TalonflowConfig, stop: threading.Event) -> None:
    """The long-lived service: a pass every `interval`; while MinIO is away, retries with backoff."""
    metrics = LifecycleMetrics()
    clear_scratch(config.data_dir)
    mover = Mover(config, minio_client(config.minio), metrics, progress=False)
    ops = config.lifecycle.ops
    start_http_server(ops.port, ops.host, registry=metrics.registry)

    @retry(
        wait=wait_exponential(multiplier=1, max=60),
        retry=retry_if_exception_type(StoreUnavailable),
        stop=lambda _state: stop.is_set(),
        before_sleep=lambda state: log.warning(
            "lifecycle: %s; hot data stays local, retrying in %.0fs",
            state.outcome.exception() if state.outcome else "?",
            state.next_action.sleep if state.next_action else 0,
        ),
        reraise=True,
    )
    def one_pass() -> None:
        try:
            changed = mover.run_pass()
        except StoreUnavailable:
            metrics.errors.labels("store_unavailable").inc()
            raise
        if any(changed.values()):
            log.info("lifecycle: %s", ", ".join(f"{d}: {n} partitions" for d, n in changed.items() if n))

    log.info("lifecycle: every %.0fs, ops on %s", config.lifecycle.interval, ops.address)
    while not stop.is_set():
        with contextlib.suppress(StoreUnavailable):  # only when stopping mid-retry
            one_pass()
        stop.wait(config.lifecycle.interval)


@dataclass
class TierStatus:
    dataset: str
    tier: str
    files: int
    bytes: int
    rows: int
    oldest: str | None
    newest: str | None


def status(config: TalonflowConfig) -> list[TierStatus]:
    """Per dataset and tier: files, bytes, rows, oldest and newest partition (from the manifest)."""
    report = []
    for name in DATASETS:
        manifest = Manifest.load(config.data_dir, name)
        tiers: dict[str, list[tuple[str, int, int]]] = {
            "hot": [],
            WARM: [],
            COLD: [],
        }  # (partition, bytes, rows)
        for partition, files in hot_files(config.data_dir, name, manifest).items():
            tiers["hot"].extend((partition, f.stat().st_size, pq.read_metadata(f).num_rows) for f in files)
        for partition, entry in manifest.partitions.items():
            for stored in entry.objects:
                tiers[stored.tier].append((partition, stored.bytes, stored.rows))
        for tier, entries in tiers.items():
            partitions = sorted(p for p, _, _ in entries)
            report.append(
                TierStatus(
                    name,
                    tier,
                    len(entries),
                    sum(b for _, b, _ in entries),
                    sum(r for _, _, r in entries),
                    partitions[0] if partitions else None,
                    partitions[-1] if partitions else None,
                )
            )
    return report
