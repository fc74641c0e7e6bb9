"""Publishing, the last half of write-audit-publish: an audited staging becomes the curated
partition readers see (``storepulse.export.staging`` stages it).

**Publishing** (:func:`publish_partition`), per partition, atomic for readers that follow the
manifest: (1) copy the staged files to ``curated/<dataset>/dt=<day>/`` under *new* names
``part-<token>-NNNNN.parquet``, where ``token`` is a hash of the staged files' ETags and sizes;
(2) write ``_manifest.json`` (files, rows, bytes, schema version, run id): the commit point;
(3) only then delete the files the manifest does not name (the previous run's, and leftovers of
a publish that crashed). A reader that resolves the partition through ``storepulse.lake.manifest``
sees the old files or the new ones, never a mix. A crash before (2) leaves the previous partition
and its manifest untouched; the rerun copies again under the same names and completes it. The
token is a content hash, so rerunning a day whose data did not change finds the same token in
the manifest and writes nothing at all. (Athena reads the partition's folder, not the manifest:
it can see both generations for the seconds between (1) and (3).) A reader holding the old
manifest while (3) runs gets a missing file, not a mixed answer: it retries.

Where the files go: ``storepulse.lake.paths``; the manifest and its readers:
``storepulse.lake.manifest``; the Glue tables: ``storepulse.lake.tables``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from storepulse.clock import Clock, system_clock
from storepulse.lake.manifest import Manifest, get_manifest, manifest_key, put_manifest
from storepulse.lake.paths import CURATED, partition_prefix

if TYPE_CHECKING:
    from storepulse.export.datasets import Dataset
    from storepulse.export.staging import StagedDataset

__all__ = ["PublishError", "PublishReport", "content_token", "publish_partition"]

log = logging.getLogger(__name__)

_STAGED_PART = re.compile(r"^part-\d{5}\.parquet$")
_PUBLISHED_PART = re.compile(r"^part-[0-9a-f]+-\d{5}\.parquet$")


class PublishError(RuntimeError):
    """A partition cannot be published as asked; the message says why."""


@dataclass(frozen=True)
class PublishReport:
    dataset: str
    day: str
    rows: int
    bytes: int
    files: tuple[str, ...]  # keys of the current files
    token: str
    changed: bool  # False: the partition already held exactly these files
    removed: int  # files of the previous publish (or of crashed attempts) deleted
    manifest_key: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Object:
    key: str
    etag: str
    size: int

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def _list_objects(s3: Any, bucket: str, prefix: str) -> list[_Object]:
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for entry in page.get("Contents", []):
            if "/" not in entry["Key"][len(prefix) + 1 :]:  # this folder only
                objects.append(_Object(entry["Key"], entry["ETag"].strip('"'), entry["Size"]))
    return sorted(objects, key=lambda o: o.key)


def content_token(objects: Iterable[Any]) -> str:
    """A short hash of files' names, ETags and sizes: equal bytes, equal token (the writer is
    deterministic), so a rerun that stages the same data publishes under the same names. (ETags
    are the content's MD5 under SSE-S3, the lake's encryption; under SSE-KMS they differ per
    upload, and a rerun would republish the same rows under new names: correct, not a no-op.)"""
    digest = hashlib.sha256()
    for obj in sorted(objects, key=lambda o: o.name):
        digest.update(f"{obj.name}\0{obj.etag}\0{obj.size}\n".encode())
    return digest.hexdigest()[:16]


def _delete(s3: Any, bucket: str, keys: Sequence[str]) -> int:
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if response.get("Errors"):
            first = response["Errors"][0]
            raise PublishError(f"could not delete {first['Key']}: {first.get('Message')}")
    return len(keys)


def _staged_objects(s3: Any, bucket: str, staged: StagedDataset) -> list[_Object]:
    """The staged files, checked against what the stage task reported (and the audit read)."""
    if not staged.strict:
        raise PublishError(
            f"{staged.name}: staged as-is after the writer refused its rows; it cannot be published"
        )
    if not staged.files:
        raise PublishError(f"{staged.name}: nothing staged")
    folder = staged.files[0].split("/", 1)[1].rsplit("/", 1)[0]
    objects = [o for o in _list_objects(s3, bucket, folder) if _STAGED_PART.match(o.name)]
    expected = sorted(path.split("/", 1)[1] for path in staged.files)
    if [o.key for o in objects] != expected:
        raise PublishError(
            f"{staged.name}: s3://{bucket}/{folder}/ holds {[o.name for o in objects]}, the "
            f"stage task wrote {[p.rsplit('/', 1)[-1] for p in expected]}: restage the day"
        )
    return objects


def publish_partition(
    s3: Any,
    bucket: str,
    dataset: Dataset,
    day: date,
    staged: StagedDataset,
    *,
    run_id: str,
    clock: Clock = system_clock,
) -> PublishReport:
    """Replace ``curated/<dataset>/dt=<day>`` by the staged files: copy under new names, commit
    the manifest, then delete what it does not name (see the module docstring). ``s3`` is a
    boto3 client (copies are server side; files are at most the writer's 128 MB)."""
    sources = _staged_objects(s3, bucket, staged)
    token = content_token(sources)
    folder = partition_prefix(CURATED, dataset.name, day)
    current = get_manifest(s3, bucket, folder)
    present = {o.name for o in _list_objects(s3, bucket, folder) if _PUBLISHED_PART.match(o.name)}
    unchanged = current is not None and current.token == token and set(current.files) <= present
    if unchanged:
        assert current is not None
        manifest = current
    else:
        names = []
        for number, source in enumerate(sources):
            name = f"part-{token}-{number:05d}.parquet"
            s3.copy_object(
                Bucket=bucket,
                Key=f"{folder}/{name}",
                CopySource={"Bucket": bucket, "Key": source.key},
            )
            names.append(name)
        manifest = Manifest(
            dataset=dataset.name,
            day=day.isoformat(),
            schema_version=dataset.schema_version,
            run_id=run_id,
            token=token,
            rows=staged.rows,
            bytes=sum(o.size for o in sources),
            files=tuple(names),
            published_at=clock().isoformat(),
        )
        put_manifest(s3, bucket, folder, manifest)
    stale = sorted(f"{folder}/{name}" for name in present - set(manifest.files))
    removed = _delete(s3, bucket, stale)
    return PublishReport(
        dataset=dataset.name,
        day=day.isoformat(),
        rows=manifest.rows,
        bytes=manifest.bytes,
        files=tuple(f"{folder}/{name}" for name in manifest.files),
        token=token,
        changed=not unchanged,
        removed=removed,
        manifest_key=manifest_key(folder),
    )
