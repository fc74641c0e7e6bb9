"""The Lambda deployment package: a deterministic zip of a handler folder, the ``storepulse``
modules it imports and the third-party packages the Lambda runtime lacks.

Why deterministic: the zip's SHA-256 names its S3 key (``lambda/<function>/<sha256>.zip``), which
is the stack's ``LambdaCodeKey`` parameter. Unchanged code must give byte-identical zips, so an
unchanged handler gives unchanged stack parameters and the deploy is a no-op; any changed byte
gives a new key, and CloudFormation updates the function.

What goes in:

- the handler folder's files (no tests, no ``__pycache__``);
- exactly the ``storepulse`` modules the handler imports, transitively (found with ``ast``, not by
  importing anything), with the ``__init__.py`` of every package on the way;
- the distributions those modules import (plus :data:`DATA_DEPENDENCIES`) and their dependencies,
  at the versions pinned in ``uv.lock``, minus what the runtime provides
  (:data:`RUNTIME_PROVIDED`), installed as wheels for the Lambda platform with uv.

The vendored install is cached in ``out_dir`` under a key made of the pins, the platform and uv's
version: repeated builds only re-zip.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import storepulse
from storepulse.config import REPO_ROOT

log = logging.getLogger(__name__)

LIBRARY: Final = "storepulse"
LIBRARY_DIR: Final = Path(storepulse.__file__).resolve().parent
LOCK_FILE: Final = REPO_ROOT / "uv.lock"

# The function's runtime (template: Runtime python3.11, Architectures x86_64).
LAMBDA_PYTHON_VERSION: Final = "3.11"
LAMBDA_PLATFORM: Final = "x86_64-manylinux2014"
# Environment markers of that runtime, for the conditional dependencies in uv.lock.
LAMBDA_MARKERS: Final = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


@dataclass(frozen=True)
class LambdaPlatform:
    """What a function's ``Runtime`` means for its vendored wheels."""

    python_version: str
    platform: str

    @property
    def markers(self) -> dict[str, str]:
        return LAMBDA_MARKERS | {
            "python_version": self.python_version,
            "python_full_version": f"{self.python_version}.0",
        }


# python3.11 runs on Amazon Linux 2 (glibc 2.26), python3.12 on Amazon Linux 2023 (glibc 2.34):
# a wheel built for manylinux_2_28 (the pinned pyarrow's only Linux wheels) needs the latter.
LAMBDA_PLATFORMS: Final = {
    "python3.11": LambdaPlatform("3.11", "x86_64-manylinux2014"),
    "python3.12": LambdaPlatform("3.12", "x86_64-manylinux_2_28"),
}
DEFAULT_RUNTIME: Final = "python3.11"

# Shipped by the Lambda Python runtime. Their own dependencies (s3transfer, urllib3,
# python-dateutil, jmespath, six) come with them and are not followed from here. A distribution
# that *our* code needs through another path (jmespath, for Powertools) is still vendored at its
# pinned version: the runtime's copy changes whenever AWS updates the runtime's boto3.
RUNTIME_PROVIDED: Final = frozenset({"boto3", "botocore"})
# Needed without being imported by name: ``zoneinfo`` falls back to the tzdata package when the
# image has no time zone database (AL2023-based images have none), and pinning it pins the rules
# the tests ran with.
DATA_DEPENDENCIES: Final = ("tzdata",)

# Fixed zip metadata: same files -> same bytes. 1980-01-01 is the earliest date zip can store.
ZIP_TIMESTAMP: Final = (1980, 1, 1, 0, 0, 0)
FILE_MODE: Final = 0o644
COMPRESSION: Final = zipfile.ZIP_DEFLATED
COMPRESS_LEVEL: Final = 6
_UNIX: Final = 3  # ZipInfo.create_system

KEPT_BUILDS: Final = 5
_SKIPPED_DIRS: Final = frozenset({"__pycache__", "tests"})  # and hidden files and folders
_SKIPPED_SUFFIXES: Final = (".pyc", ".pyo")


class PackagingError(RuntimeError):
    """The package cannot be built; the message says which input is at fault."""


@dataclass(frozen=True)
class BuiltPackage:
    """A built zip. ``modules``: the ``storepulse`` modules it holds (dotted names);
    ``dependencies``: the vendored distributions as ``name==version``."""

    path: Path
    sha256: str
    size: int
    modules: tuple[str, ...]
    dependencies: tuple[str, ...]
    files: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for XCom)."""
        return {**asdict(self), "path": str(self.path)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuiltPackage:
        return cls(
            path=Path(data["path"]),
            sha256=data["sha256"],
            size=int(data["size"]),
            modules=tuple(data["modules"]),
            dependencies=tuple(data["dependencies"]),
            files=int(data["files"]),
        )


def function_name(function_dir: Path) -> str:
    """``lambdas/stream_processor`` -> ``stream-processor`` (the key prefix and zip name)."""
    return function_dir.name.replace("_", "-")


def artifact_key(package: BuiltPackage, function: str = "stream-processor") -> str:
    """S3 key of a package: content-addressed, so the key changes exactly when a byte does."""
    return f"lambda/{function}/{package.sha256}.zip"


def artifacts_bucket(env: str, account_id: str) -> str:
    """Bucket of deployment artifacts (bucket names are global: the account keeps them apart)."""
    return f"storepulse-{env}-artifacts-{account_id}"


def build_lambda_zip(
    function_dir: Path,
    out_dir: Path,
    *,
    library_dir: Path = LIBRARY_DIR,
    lock_file: Path = LOCK_FILE,
    runtime: str = DEFAULT_RUNTIME,
) -> BuiltPackage:
    """Build ``<out_dir>/<function>-<sha256>.zip`` from a handler folder (see the module doc),
    with wheels for the function's ``runtime`` (the template's ``Runtime``)."""
    if runtime not in LAMBDA_PLATFORMS:
        raise PackagingError(f"no wheel platform known for runtime {runtime!r}")
    target = LAMBDA_PLATFORMS[runtime]
    function_dir, out_dir = function_dir.resolve(), out_dir.resolve()
    if not function_dir.is_dir():
        raise PackagingError(f"{function_dir} is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    handler_files = dict(_tree(function_dir))
    modules, third_party = library_modules(
        [p for p in handler_files.values() if p.suffix == ".py"],
        library_dir=library_dir,
        local_names=_local_module_names(function_dir),
    )
    pins = lambda_dependencies(third_party, lock_file=lock_file, target=target)
    vendor_dir = vendor_dependencies(pins, cache_dir=out_dir / "vendor", target=target)
    entries = _merge(
        handler_files,
        {f"{name.replace('.', '/')}{_suffix(path)}": path for name, path in modules.items()},
        dict(_tree(vendor_dir, skip_top={"bin"})),
    )
    package = _write_package(entries, out_dir / f"{function_name(function_dir)}-", modules, pins)
    log.info(
        "built %s: %d bytes, sha256 %s, %d files, %d storepulse modules, %d vendored packages",
        package.path.name,
        package.size,
        package.sha256,
        package.files,
        len(package.modules),
        len(package.dependencies),
    )
    return package


def upload_package(
    s3: Any, package: BuiltPackage, bucket: str, *, function: str = "stream-processor"
) -> tuple[str, bool]:
    """Put the zip at its content-addressed key; (key, False) when that key already exists, since
    it then holds these very bytes (``s3``: a boto3 client)."""
    from botocore.exceptions import ClientError

    key = artifact_key(package, function)
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return key, False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey", "NotFound"}:
            raise
    s3.upload_file(
        str(package.path),
        bucket,
        key,
        ExtraArgs={"ContentType": "application/zip", "Metadata": {"sha256": package.sha256}},
    )
    return key, True


def local_package(built: Mapping[str, Any], function_dir: Path, out_dir: Path) -> BuiltPackage:
    """The package described by ``built`` (``BuiltPackage.to_dict()``), rebuilt when this machine
    lacks the file (another worker built it): the build is deterministic, so a different hash
    means the inputs differ, which is an error."""
    package = BuiltPackage.from_dict(built)
    if package.path.is_file():
        return package
    rebuilt = build_lambda_zip(function_dir, out_dir)
    if rebuilt.sha256 != package.sha256:
        raise PackagingError(
            f"{function_dir} now builds to {rebuilt.sha256}, not {package.sha256}: it changed"
        )
    return rebuilt


# ------------------------------------------------------------------------------ storepulse modules


def library_modules(
    entry_files: Iterable[Path],
    *,
    library_dir: Path = LIBRARY_DIR,
    local_names: frozenset[str] = frozenset(),
) -> tuple[dict[str, Path], set[str]]:
    """The ``storepulse`` modules reachable from ``entry_files`` by imports, as {dotted name:
    file}, and the top-level names of the third-party packages they import.

    Every import counts, including those inside functions (they run when the function does),
    except under ``if TYPE_CHECKING:``. ``local_names``: modules of the handler folder itself.
    """
    modules: dict[str, Path] = {}
    third_party: set[str] = set()
    pending: list[tuple[str | None, Path]] = [(None, path) for path in entry_files]
    while pending:
        importer, path = pending.pop()
        for name in _imported_names(importer, path):
            root = name.split(".")[0]
            if root == LIBRARY:
                found = _library_files(name, library_dir)
                pending += [(module, file) for module, file in found if module not in modules]
                modules.update(found)
            elif root not in sys.stdlib_module_names and root not in local_names:
                third_party.add(root)
    return dict(sorted(modules.items())), third_party


def _imported_names(importer: str | None, path: Path) -> Iterator[str]:
    """Absolute module names a file imports (``from a import b`` yields ``a`` and ``a.b``)."""
    collector = _ImportCollector()
    collector.visit(ast.parse(path.read_bytes(), filename=str(path)))
    is_package = path.name == "__init__.py"
    for module, names, level in collector.found:
        base = _absolute(importer, is_package, module, level, path)
        if base == "__future__":
            continue
        yield base
        yield from (f"{base}.{name}" for name in names if name != "*")


def _absolute(importer: str | None, is_package: bool, module: str, level: int, path: Path) -> str:
    if not level:
        return module
    if importer is None:
        raise PackagingError(f"{path}: relative imports are not supported in a handler folder")
    parts = importer.split(".") if is_package else importer.split(".")[:-1]
    if level - 1 > len(parts) - 1:
        raise PackagingError(f"{path}: relative import beyond the top-level package")
    parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, module] if module else parts)


class _ImportCollector(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[str, tuple[str, ...], int]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, (), 0) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node.module or "", tuple(a.name for a in node.names), node.level))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _library_files(name: str, library_dir: Path) -> list[tuple[str, Path]]:
    """The file of ``storepulse.x.y`` and the ``__init__.py`` of each package above it.

    A name that is no module (``from storepulse.x import SomeClass``) gives only its packages;
    a name whose *package* is missing is an error: the handler would fail at import."""
    parts = name.split(".")
    found: list[tuple[str, Path]] = []
    for depth in range(1, len(parts) + 1):
        dotted = ".".join(parts[:depth])
        folder = library_dir.parent.joinpath(*parts[:depth])
        if (folder / "__init__.py").is_file():
            found.append((dotted, folder / "__init__.py"))
        elif folder.with_suffix(".py").is_file():
            found.append((dotted, folder.with_suffix(".py")))
            break
        elif depth < len(parts):
            raise PackagingError(f"{dotted} (imported as {name}) is not a module of {library_dir}")
    return found


def _suffix(path: Path) -> str:
    return "/__init__.py" if path.name == "__init__.py" else ".py"


def _local_module_names(function_dir: Path) -> frozenset[str]:
    return frozenset(p.stem for p in function_dir.iterdir() if p.suffix == ".py" or p.is_dir())


# ------------------------------------------------------------------------------ third-party pins


def lambda_dependencies(
    import_roots: Iterable[str],
    *,
    lock_file: Path = LOCK_FILE,
    target: LambdaPlatform | None = None,
) -> dict[str, str]:
    """{distribution: pinned version} to vendor for code importing ``import_roots``."""
    markers = (target or LAMBDA_PLATFORMS[DEFAULT_RUNTIME]).markers
    locked = _locked_packages(lock_file)
    wanted = {d for root in import_roots for d in _distributions_of(root)} | {
        _normalise(d) for d in DATA_DEPENDENCIES
    }
    pins: dict[str, str] = {}
    pending = sorted(wanted)
    while pending:
        name = pending.pop()
        if name in pins or name in RUNTIME_PROVIDED:
            continue
        package = _one_version(name, locked.get(name), lock_file, markers)
        pins[name] = package["version"]
        pending += [
            _normalise(dep["name"])
            for dep in package.get("dependencies", [])
            if _applies(dep.get("marker"), markers)
        ]
    return dict(sorted(pins.items()))


def _normalise(name: str) -> str:
    """PEP 503 name: ``Typing_Extensions`` -> ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _installed_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions_of(import_root: str) -> list[str]:
    distributions = _installed_distributions().get(import_root)
    if not distributions:
        raise PackagingError(
            f"the function imports {import_root!r}, which no installed distribution provides"
        )
    return [_normalise(d) for d in distributions]


def _locked_packages(lock_file: Path) -> dict[str, list[dict[str, Any]]]:
    try:
        lock = tomllib.loads(lock_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PackagingError(f"cannot read {lock_file}: {exc}") from exc
    packages: dict[str, list[dict[str, Any]]] = {}
    for package in lock.get("package", []):
        packages.setdefault(_normalise(package["name"]), []).append(package)
    return packages


def _one_version(
    name: str,
    candidates: list[dict[str, Any]] | None,
    lock_file: Path,
    markers: Mapping[str, str] = LAMBDA_MARKERS,
) -> dict[str, Any]:
    """The lock's entry for ``name`` on the Lambda platform (a lock may fork per platform)."""
    if not candidates:
        raise PackagingError(f"{name} is needed by the function but not pinned in {lock_file}")
    applicable = [
        c
        for c in candidates
        if not c.get("resolution-markers")
        or any(_applies(m, markers) for m in c["resolution-markers"])
    ]
    if len(applicable) != 1:
        versions = ", ".join(c["version"] for c in candidates)
        raise PackagingError(f"{lock_file} pins {name} ambiguously for Lambda: {versions}")
    return applicable[0]


def _applies(marker: str | None, markers: Mapping[str, str] = LAMBDA_MARKERS) -> bool:
    if not marker:
        return True
    from packaging.markers import Marker

    return Marker(marker).evaluate(dict(markers))


# ------------------------------------------------------------------------------ vendoring with uv


def find_uv() -> str:
    """The uv executable: the ``uv`` distribution's own (a runtime dependency), else one next to
    this interpreter, on PATH, or in the repository's ``.tools`` (where ``make`` installs it)."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    candidates = [
        Path(sys.executable).parent / "uv",
        shutil.which("uv"),
        REPO_ROOT / ".tools" / "bin" / "uv",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    raise PackagingError("uv not found: install the project's dependencies (make install)")


def vendor_dependencies(
    pins: Mapping[str, str], *, cache_dir: Path, target: LambdaPlatform | None = None
) -> Path:
    """A folder with ``pins`` installed for the Lambda platform; reused while the key matches."""
    platform = target or LAMBDA_PLATFORMS[DEFAULT_RUNTIME]
    uv = find_uv()
    requirements = [f"{name}=={version}" for name, version in sorted(pins.items())]
    key_text = "\n".join(
        [platform.platform, platform.python_version, uv_version(uv), *requirements]
    )
    folder = cache_dir / hashlib.sha256(key_text.encode()).hexdigest()[:24]
    if folder.is_dir():
        log.info("vendored dependencies cached in %s", folder)
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache_dir))
    try:
        _uv_install(uv, staging, requirements, platform)
        staging.rename(folder)  # atomic: a concurrent build sees all of it or none
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("vendored %d packages into %s", len(requirements), folder)
    return folder


@cache
def uv_version(uv: str) -> str:
    return subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout


def _uv_install(uv: str, target: Path, requirements: list[str], platform: LambdaPlatform) -> None:
    command = [
        uv,
        "pip",
        "install",
        "--quiet",
        "--target",
        str(target),
        "--python",
        sys.executable,
        "--python-platform",
        platform.platform,
        "--python-version",
        platform.python_version,
        "--only-binary",
        ":all:",
        "--no-deps",
        *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackagingError(
            f"uv could not install {', '.join(requirements)} for {platform.platform}:\n"
            + result.stderr.strip()[-2000:]
        )


# ------------------------------------------------------------------------------ the zip


def _tree(root: Path, *, skip_top: Iterable[str] = ()) -> Iterator[tuple[str, Path]]:
    """(archive name, file) of every file under ``root``, minus caches, bytecode and tests."""
    skipped_top = set(skip_top)
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        at_top = here == root
        dirs[:] = [
            d
            for d in dirs
            if d not in _SKIPPED_DIRS
            and not d.startswith(".")
            and not (at_top and d in skipped_top)
        ]
        for name in files:
            if name.startswith(".") or name.endswith(_SKIPPED_SUFFIXES) or _is_test_file(name):
                continue
            path = here / name
            yield path.relative_to(root).as_posix(), path


def _is_test_file(name: str) -> bool:
    return name == "conftest.py" or (name.startswith("test_") and name.endswith(".py"))


def _merge(*parts: Mapping[str, Path]) -> dict[str, Path]:
    entries: dict[str, Path] = {}
    for part in parts:
        clashes = sorted(set(entries) & set(part))
        if clashes:
            raise PackagingError(f"two sources for {', '.join(clashes[:5])} in the zip")
        entries.update(part)
    return entries


def _inputs_digest(entries: Mapping[str, Path]) -> str:
    """Names and contents of everything the zip will hold: same digest, same zip bytes."""
    digest = hashlib.sha256()
    for name in sorted(entries):
        digest.update(name.encode() + b"\0" + hashlib.sha256(entries[name].read_bytes()).digest())
    return digest.hexdigest()


def _write_package(
    entries: Mapping[str, Path], prefix: Path, modules: Mapping[str, Path], pins: Mapping[str, str]
) -> BuiltPackage:
    """The zip of ``entries``; one already built from the same inputs is reused (zipping a
    vendored pyarrow takes a minute, hashing its files a second)."""
    record = prefix.with_name(f".{prefix.name}inputs-{_inputs_digest(entries)[:32]}.json")
    if record.is_file():
        built = BuiltPackage.from_dict(json.loads(record.read_text()))
        if built.path.is_file() and _file_sha256(built.path) == built.sha256:
            return built
    package = _zip_package(entries, prefix, modules, pins)
    record.write_text(json.dumps(package.to_dict()))
    return package


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _zip_package(
    entries: Mapping[str, Path], prefix: Path, modules: Mapping[str, Path], pins: Mapping[str, str]
) -> BuiltPackage:
    staging = prefix.with_name(f".{prefix.name}{os.getpid()}.zip.tmp")
    write_deterministic_zip(entries, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    path = prefix.with_name(f"{prefix.name}{digest}.zip")
    staging.replace(path)
    _prune(prefix)
    return BuiltPackage(
        path=path,
        sha256=digest,
        size=path.stat().st_size,
        modules=tuple(modules),
        dependencies=tuple(f"{name}=={version}" for name, version in pins.items()),
        files=len(entries),
    )


def _prune(prefix: Path) -> None:
    """Keep the newest :data:`KEPT_BUILDS` zips of a function: the artifacts bucket keeps every
    version; the local copies only serve the upload of a recent run."""
    builds = sorted(prefix.parent.glob(f"{prefix.name}*.zip"), key=lambda p: p.stat().st_mtime)
    for stale in builds[:-KEPT_BUILDS]:
        stale.unlink(missing_ok=True)


def write_deterministic_zip(entries: Mapping[str, Path], destination: Path) -> None:
    """Zip ``{archive name: file}`` with sorted names, fixed dates, modes and compression."""
    with zipfile.ZipFile(destination, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.create_system = _UNIX
            info.external_attr = (stat.S_IFREG | FILE_MODE) << 16
            info.compress_type = COMPRESSION
            archive.writestr(info, entries[name].read_bytes(), compresslevel=COMPRESS_LEVEL)
