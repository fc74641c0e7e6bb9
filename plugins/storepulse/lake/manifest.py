"""A published partition's manifest, and the manifest-aware reader every consumer uses.

The export's publish step copies a partition's files under new names, then writes
``_manifest.json`` (its commit point), then deletes the files it does not name. A reader that
resolves a partition here sees the old files or the new ones, never a mix: in a folder with a
manifest only the files it names are current; a folder without one (published before manifests
existed) is read whole.

Two ways in, one rule (:func:`current_names`): through a pyarrow filesystem, per partition
(:func:`current_files`: the export's rollup, tests, DuckDB via :func:`current_uris`), and through
a boto3 listing of a range of partitions (:class:`ManifestReader`: the dashboard's history, one
listing for a whole period, manifests cached by ETag).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Final, TypeVar

from storepulse.lake.paths import partition_prefix

MANIFEST_NAME: Final = "_manifest.json"
MANIFEST_FORMAT: Final = "storepulse.partition-manifest/1"

T = TypeVar("T")


class ManifestError(ValueError):
    """Bytes that are not a partition manifest."""


@dataclass(frozen=True)
class Manifest:
    """The commit point of a published partition: its files and what they hold."""

    dataset: str
    day: str
    schema_version: int
    run_id: str
    token: str
    rows: int
    bytes: int
    files: tuple[str, ...]  # names inside the partition folder
    published_at: str
    format: str = MANIFEST_FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        data = json.loads(raw)
        if data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"not a partition manifest: format {data.get('format')!r}")
        data["files"] = tuple(data["files"])
        return cls(**data)


def manifest_key(folder: str) -> str:
    """The manifest's key in a partition folder (a key prefix such as ``curated/x/dt=...``)."""
    return f"{folder}/{MANIFEST_NAME}"


def get_manifest(s3: Any, bucket: str, folder: str) -> Manifest | None:
    """A partition folder's manifest through a boto3 client, or None when it has none."""
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=manifest_key(folder))["Body"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"NoSuchKey", "404"}:
            return None
        raise
    with body:
        return Manifest.from_json(body.read())


def put_manifest(s3: Any, bucket: str, folder: str, manifest: Manifest) -> str:
    """Write a partition folder's manifest (the publish's commit point); returns its key."""
    key = manifest_key(folder)
    s3.put_object(Bucket=bucket, Key=key, Body=manifest.to_json(), ContentType="application/json")
    return key


def _name(dataset: Any) -> str:
    return dataset if isinstance(dataset, str) else str(dataset.name)


def current_names(names: Iterable[str], manifest: frozenset[str] | None) -> list[str]:
    """The current files among a partition folder's ``names``: those the manifest names, or
    every ``.parquet`` when the folder has no manifest (``None``)."""
    if manifest is not None:
        return [n for n in names if n in manifest]
    return [n for n in names if n.endswith(".parquet")]


def read_manifest(fs: Any, root: str, dataset: Any, day: date) -> Manifest | None:
    """The manifest of a published partition, or None (never published, or published before
    manifests existed). ``fs`` is a pyarrow filesystem, ``root`` its path of the curated folder
    (``open_filesystem("s3://<lake>/curated")`` gives both); ``dataset`` a name or a Dataset."""
    path = f"{partition_prefix(root, _name(dataset), day)}/{MANIFEST_NAME}"
    try:
        with fs.open_input_stream(path) as stream:
            return Manifest.from_json(stream.read())
    except FileNotFoundError:
        return None


def current_files(fs: Any, root: str, dataset: Any, day: date) -> list[str]:
    """The paths (in ``fs``'s terms) of a partition's current files. Empty when the partition
    does not exist. Readers use this instead of listing, which during a publish can see the
    previous files beside the new ones."""
    folder = partition_prefix(root, _name(dataset), day)
    manifest = read_manifest(fs, root, dataset, day)
    if manifest is not None:
        return [f"{folder}/{name}" for name in manifest.files]
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    names = [i.base_name for i in infos if i.type == pafs.FileType.File]
    return sorted(f"{folder}/{name}" for name in current_names(names, None))


def current_uris(fs: Any, root: str, dataset: Any, days: Iterable[date]) -> list[str]:
    """``s3://`` URIs of the current files of several days, for DuckDB::

    duck.execute("SELECT ... FROM read_parquet(?, hive_partitioning = true)", [uris])
    """
    scheme = "s3://" if fs.type_name == "s3" else ""
    return [scheme + path for day in days for path in current_files(fs, root, dataset, day)]


class ManifestReader:
    """Manifest-aware selection of listed files through a boto3 S3 client, manifests cached
    by ETag (thread-safe): a range of partitions costs one listing plus the changed manifests."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self._cache: dict[str, tuple[str, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def current(
        self, files: Sequence[T], manifests: Mapping[str, str], key: Callable[[T], str]
    ) -> list[T]:
        """The current ones of ``files`` (listed objects, ``key`` gives each one's key), given
        the listed manifests' ``{partition folder: ETag}``."""
        named = {folder: self.names(folder, etag) for folder, etag in manifests.items()}

        def is_current(file: T) -> bool:
            folder, name = key(file).rsplit("/", 1)
            return bool(current_names([name], named.get(folder)))

        return [f for f in files if is_current(f)]

    def names(self, folder: str, etag: str) -> frozenset[str]:
        """The file names the manifest of ``folder`` (a key prefix) commits."""
        with self._lock:
            cached = self._cache.get(folder)
        if cached and cached[0] == etag:
            return cached[1]
        manifest = get_manifest(self.s3, self.bucket, folder)
        names = frozenset(manifest.files if manifest else ())  # gone: the partition was removed
        with self._lock:
            self._cache[folder] = (etag, names)
        return names
