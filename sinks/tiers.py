"""Where each hour partition of a dataset lives: the tier manifest, and the MinIO side of the tiers.

The manifest (`<data_dir>/_tiers/<dataset>.json`, replaced atomically) is the one truth readers
use. For every partition that left the hot tier it lists the objects holding its rows and the
local files those objects replaced. A reader takes, per partition, the listed objects plus the
local files not listed as moved; a move becomes visible in one rename, so a query sees either
the old copy or the new one, never both and never neither. Superseded copies are deleted only
after a grace period, so a query that read the manifest just before a move can still finish.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from minio import Minio
from minio.error import S3Error

from schemas.config import MinioConfig

WARM, COLD = "warm", "cold"


@dataclass
class StoredObject:
    key: str  # "<tier>/<dataset>/date=…/hour=…/<sha256 prefix>.parquet"
    rows: int
    bytes: int

    @property
    def tier(self) -> str:
        return self.key.split("/", 1)[0]


@dataclass
class Partition:
    """A partition that has left the hot tier (a key of the manifest: "date=…/hour=…")."""

    objects: list[StoredObject] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # local file names its objects replaced


@dataclass
class Garbage:
    """A copy no reader may start on any more, deleted once `after` has passed."""

    path: str  # a local path, or an object key
    after: float
    local: bool


@dataclass
class Manifest:
    partitions: dict[str, Partition] = field(default_factory=dict)
    garbage: list[Garbage] = field(default_factory=list)

    @staticmethod
    def path(data_dir: Path, dataset: str) -> Path:
        return data_dir / "_tiers" / f"{dataset}.json"

    @classmethod
    def load(cls, data_dir: Path, dataset: str) -> Manifest:
        path = cls.path(data_dir, dataset)
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls(
            partitions={
                name: Partition([StoredObject(**o) for o in p["objects"]], p["moved"])
                for name, p in raw["partitions"].items()
            },
            garbage=[Garbage(**g) for g in raw["garbage"]],
        )

    def save(self, data_dir: Path, dataset: str) -> None:
        path = self.path(data_dir, dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        with temporary.open("w") as handle:
            json.dump({"partitions": {k: asdict(v) for k, v in self.partitions.items()}, "garbage": [
                asdict(g) for g in self.garbage
            ]}, handle)  # fmt: skip
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def referenced_keys(self) -> set[str]:
        keys = {o.key for p in self.partitions.values() for o in p.objects}
        return keys | {g.path for g in self.garbage if not g.local}

    def discard(self, path: str, local: bool, grace: float) -> None:
        self.garbage.append(Garbage(path, time.time() + grace, local))


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """One lifecycle mover per data dir at a time (the manifest has a single writer)."""
    lock = data_dir / "_tiers" / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another lifecycle process holds {lock}") from None
        yield


def minio_client(config: MinioConfig) -> Minio:
    return Minio(
        config.endpoint.address,
        access_key=config.access_key.get_secret_value(),
        secret_key=config.secret_key.get_secret_value(),
        secure=False,
    )


def storage_options(config: MinioConfig) -> dict[str, Any]:
    """What Polars (object_store) needs to read `s3://<bucket>/…` from MinIO."""
    return {
        "aws_endpoint_url": f"http://{config.endpoint.address}",
        "aws_access_key_id": config.access_key.get_secret_value(),
        "aws_secret_access_key": config.secret_key.get_secret_value(),
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }


def ensure_bucket(config: MinioConfig) -> bool:
    """Create the bucket if it is missing; True when it was created."""
    client = minio_client(config)
    if client.bucket_exists(config.bucket):
        return False
    try:
        client.make_bucket(config.bucket)
    except S3Error as err:  # created meanwhile by another part of the stack
        if err.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise
    return True
