"""Benchmark: the export's conversion alone, per-item vs vectorized, in the same run.

    .venv/bin/python -m benchmarks.export_conversion [--items 50000] [--sizes 100000,1000000] \
        [--check]

Synthetic order facts of one day (1-3 lines each, as ``benchmarks.export`` fills the table) are
written as a native export's gzipped DynamoDB JSON data files (100k items a file, as AWS splits
an export) on local disk, so moto and S3 take no part. Each measurement runs in a subprocess of
its own (its peak RSS is its own ``VmHWM``):

- **conversion**: the files to the facts table's data sets as Arrow rows, nothing written. Old:
  ``iter_export_items`` + the data sets' row builders + ``Table.from_pylist`` (what the writer
  converts); new: ``columnar.export_batches`` (the compiled scanner, ``export.scanner``) +
  ``columnar_rows``; pyarrow: the same with pyarrow's JSON parser instead of the scanner (the
  vectorized path before the scanner). The scanner's warm-up (numba imported, its JIT loaded
  from the cache) runs before the baseline in every worker and is printed on its own.
- **staging**: conversion plus the sorted, zstd Parquet files (``stage_table`` vs
  ``stage_export``); both paths' files are compared byte for byte.

Items/s per core is items over the process's CPU time (all its threads), so the noise of other
work on the machine and Arrow's threads both count fairly. ``--sizes``: the vectorized
conversion alone at each size, for the peak memory (target: flat up to 1M items). The targets
are printed with what was missed; ``--check`` exits 1 when one is.

``--breakdown``: where the vectorized conversion's CPU goes, each stage a worker of its own on the
same files: inflating alone, the scanner making the ``Item`` structs, the rest (Arrow compute);
pyarrow's parser making the same structs beside it; the JIT's first compile (a worker with an
empty ``NUMBA_CACHE_DIR``). Each worker runs three times in turn, its best run counted.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import print_table
from storepulse.config import REPO_ROOT

FILE_ITEMS = 100_000
DAY = "2026-11-27"
TARGET_ITEMS_PER_CORE = 100_000
TARGET_MEMORY_RATIO = 1.25  # peak RSS at the largest size over the smallest


# --- export files ------------------------------------------------------------------------------


def _line(number: int, rng: random.Random) -> str:
    """One order fact in DynamoDB JSON, built as text (fast enough for a million)."""
    lines = []
    for n in range(rng.randint(1, 3)):
        sku = rng.randrange(60)
        cents = rng.randrange(50, 5000)
        lines.append(
            f'{{"M":{{"sku":{{"S":"sku-{sku:03d}"}},"category":{{"S":"c{sku % 3}"}},'
            f'"quantity":{{"N":"{n + 1}"}},'
            f'"unit_price":{{"N":"{cents // 100}.{cents % 100:02d}"}}}}}}'
        )
    order = f"o-{number:08d}"
    return (
        f'{{"Item":{{"pk":{{"S":"ORDER#{order}"}},"sk":{{"S":"ORDER"}},"type":{{"S":"order"}},'
        f'"order_id":{{"S":"{order}"}},"event_id":{{"S":"e-{number:08d}"}},'
        f'"store_id":{{"S":"s-00{number % 3 + 1}"}},"business_date":{{"S":"{DAY}"}},'
        f'"occurred_at":{{"S":"{DAY}T{7 + number % 14:02d}:{number % 60:02d}:00+00:00"}},'
        f'"channel":{{"S":"in_store"}},"currency":{{"S":"EUR"}},'
        f'"customer_id":{{"S":"c-{number % 5000:05d}"}},"employee_id":{{"S":"emp-{number % 7}"}},'
        f'"total":{{"N":"{number % 997}.{number % 100:02d}"}},"units":{{"N":"{len(lines)}"}},'
        f'"lines":{{"L":[{",".join(lines)}]}},"gsi1pk":{{"S":"ORDERS#{DAY}"}},'
        f'"expires_at":{{"N":"{1_800_000_000 + number}"}}}}}}\n'
    )


def write_export(folder: Path, items: int) -> list[Path]:
    """``items`` orders in data files of ``FILE_ITEMS`` lines (gzip level 1: quick to write)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, paths = random.Random(items), []
    for start in range(0, items, FILE_ITEMS):
        path = folder / f"part-{len(paths):05d}.json.gz"
        with gzip.open(path, "wt", compresslevel=1) as out:
            out.writelines(_line(n, rng) for n in range(start, min(start + FILE_ITEMS, items)))
        paths.append(path)
    return paths


class _LocalS3:
    """``get_object`` over local files: the S3 read path without S3."""

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        return {"Body": Path(Key).open("rb")}  # closed by the reader


# --- the measured work (in a worker process) ---------------------------------------------------


def _export(paths: list[str]) -> Any:
    from storepulse.export.sources import CompletedExport

    return CompletedExport("arn:bench", "local", "", "FULL_EXPORT", None, tuple(paths), False)


def _old_conversion(paths: list[str]) -> int:
    import pyarrow as pa

    from storepulse.export.datasets import datasets_of
    from storepulse.export.dynamodb_json import iter_export_items
    from storepulse.layout import Table

    datasets, day, rows = datasets_of(Table.FACTS), _day(), 0
    buffers: dict[str, list[dict[str, Any]]] = {d.name: [] for d in datasets}
    for path in paths:
        with Path(path).open("rb") as stream:
            for item in iter_export_items(stream):
                for d in datasets:
                    if d.selects(item, day):
                        buffers[d.name].extend(d.rows(item, day))
                for d in datasets:  # the writer converts every 16,384 rows
                    if len(buffers[d.name]) >= 16_384:
                        rows += pa.Table.from_pylist(buffers[d.name], schema=d.schema).num_rows
                        buffers[d.name] = []
    return rows + sum(
        pa.Table.from_pylist(buffers[d.name], schema=d.schema).num_rows for d in datasets
    )


def _new_conversion(paths: list[str], scanned: bool = True) -> int:
    from storepulse.export import columnar
    from storepulse.export.datasets import datasets_of
    from storepulse.layout import Table

    datasets, day, rows = datasets_of(Table.FACTS), _day(), 0
    schema = columnar.parse_schema(datasets)  # as staging does: the table's data sets' attributes
    export = _export(paths)
    for items in columnar.export_batches(_LocalS3(), export, schema, scanned=scanned):
        batch = columnar.Items(items)  # as staging does: the data sets share their attributes
        rows += sum(columnar.columnar_rows(d, batch, day).table.num_rows for d in datasets)
    return rows


def _inflation(paths: list[str]) -> int:
    """The data files inflated as the conversion inflates them (ISA-L), nothing parsed."""
    from isal import igzip

    from storepulse.export.columnar import BLOCK_BYTES

    inflated = 0
    for path in paths:
        with igzip.open(path, "rb") as stream:
            while chunk := stream.read(BLOCK_BYTES):
                inflated += len(chunk)
    return inflated


def _parse(paths: list[str], typed: bool, scanned: bool = False) -> int:
    """The conversion's reading alone, the ``Item`` structs made: by the scanner (``scanned``)
    or pyarrow's parser, with the table's schema (``typed``) or keeping no attribute (pyarrow:
    its tokenizing of every line)."""
    from storepulse.export import columnar
    from storepulse.export.datasets import datasets_of
    from storepulse.layout import Table

    schema = columnar.parse_schema(datasets_of(Table.FACTS)) if typed else columnar.item_type({})
    batches = columnar.export_batches(_LocalS3(), _export(paths), schema, scanned=scanned)
    return sum(len(items) for items in batches)


def _staging(paths: list[str], out: str, vectorized: bool) -> int:
    import pyarrow.fs as pafs

    from storepulse.export.datasets import datasets_of
    from storepulse.export.staging import stage_export
    from storepulse.layout import Table

    staged = stage_export(
        _LocalS3(),
        _export(paths),
        datasets_of(Table.FACTS),
        _day(),
        out,
        pafs.LocalFileSystem(),
        vectorized=vectorized,
    )
    return sum(s.rows for s in staged.values())


def _day() -> Any:
    from datetime import date

    return date.fromisoformat(DAY)


def _peak_rss() -> int:
    from benchmarks.export import peak_rss

    return peak_rss()


SCANNING = frozenset({"new", "new-staging", "scan", "warm-up"})  # the workers the scanner reads


def worker(kind: str, paths: list[str], out: str) -> dict[str, Any]:
    # Import costs go before the baseline: pyarrow imports pandas on its first array (~1 s of
    # CPU here), once per process, whatever the table's size.
    import pandas  # noqa: F401
    import pyarrow as pa

    import storepulse.export.columnar
    import storepulse.export.publish  # noqa: F401

    pa.array([0])
    # The scanner's JIT: compiled once per machine (numba's cache), loaded once per process;
    # both before the baseline, their CPU reported on its own ("warm-up"), in the workers that
    # scan. Staging reads through the scanner at every size here, as the conversion does.
    warm = time.process_time()
    if kind in SCANNING:
        from storepulse.export import columnar, scanner

        columnar.SCANNER_MIN_ITEMS = 0
        scanner.warm_up()
    warm = time.process_time() - warm

    before = _peak_rss()
    cpu, wall = time.process_time(), time.perf_counter()
    work = {
        "old": lambda: _old_conversion(paths),
        "new": lambda: _new_conversion(paths),
        "pyarrow": lambda: _new_conversion(paths, scanned=False),
        "old-staging": lambda: _staging(paths, out, vectorized=False),
        "new-staging": lambda: _staging(paths, out, vectorized=True),
        "inflate": lambda: _inflation(paths),
        "tokenize": lambda: _parse(paths, typed=False),
        "parse": lambda: _parse(paths, typed=True),
        "scan": lambda: _parse(paths, typed=True, scanned=True),
        "warm-up": lambda: 0,
    }[kind]
    rows = work()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = _peak_rss()
    result = {"rows": rows, "cpu": cpu, "wall": wall, "peak_rss": peak, "growth": peak - before}
    return result | {"warm_up_cpu": warm}


def run_worker(
    kind: str, paths: list[Path], out: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.export_conversion", "--worker", kind]
    command += ["--out", str(out), *map(str, paths)]
    environment = os.environ | (env or {})
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, check=False, env=environment
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the comparison ----------------------------------------------------------------------------


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.parquet"))
    }


def _json_bytes(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                total += len(chunk)
    return total


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f}"


HEADERS = ["path", "items", "CPU s", "items/s/core", "wall s", "peak RSS MiB", "growth MiB"]


def _row(name: str, items: int, result: dict[str, Any]) -> list[Any]:
    rate = items / max(result["cpu"], 1e-9)
    cells = [f"{result['cpu']:.2f}", f"{rate:,.0f}", f"{result['wall']:.2f}"]
    return [name, f"{items:,}", *cells, _mib(result["peak_rss"]), _mib(result["growth"])]


def compare(items: int, folder: Path) -> dict[str, Any]:
    """Both paths on the same files: conversion alone, then staging (bytes compared)."""
    paths = write_export(folder / f"export-{items}", items)
    results = {k: run_worker(k, paths, folder / k) for k in ("old", "pyarrow", "new")}
    results |= {k: run_worker(k, paths, folder / k) for k in ("old-staging", "new-staging")}
    for result in results.values():
        result["items_per_core_second"] = items / max(result["cpu"], 1e-9)
    compressed = sum(p.stat().st_size for p in paths)
    summary = {
        "items": items,
        "paths": results,
        "bytes_read": compressed,
        "json_bytes": _json_bytes(paths),
        "speedup": results["old"]["cpu"] / max(results["new"]["cpu"], 1e-9),
        "scanner_speedup": results["pyarrow"]["cpu"] / max(results["new"]["cpu"], 1e-9),
        "warm_up_cpu": results["new"]["warm_up_cpu"],
        "staging_speedup": results["old-staging"]["cpu"] / max(results["new-staging"]["cpu"], 1e-9),
        "same_parquet": _digests(folder / "old-staging") == _digests(folder / "new-staging"),
    }
    print(
        f"\nexport conversion, {items:,} orders in {len(paths)} file(s): {compressed:,} bytes "
        f"read (gzip), {summary['json_bytes']:,} bytes of JSON"
    )
    print_table(HEADERS, [_row(k, items, r) for k, r in results.items()])
    print(
        f"vectorized vs per-item: conversion {summary['speedup']:.1f}x, staging "
        f"{summary['staging_speedup']:.1f}x less CPU; same Parquet bytes: {summary['same_parquet']}"
        f"\ncompiled scanner vs pyarrow's parser (same conversion otherwise): "
        f"{summary['scanner_speedup']:.2f}x less CPU; the scanner's warm-up per process (numba "
        f"imported, the JIT loaded from its cache), not counted above: "
        f"{summary['warm_up_cpu']:.2f} s of CPU"
    )
    return summary


BREAKDOWN_RUNS = 3  # each worker's best of: one run of each is within a loaded machine's noise


def breakdown(items: int, folder: Path) -> dict[str, Any]:
    """The vectorized conversion's CPU by stage, each the difference of two workers' best of
    ``BREAKDOWN_RUNS`` (run in turn, so the machine's load falls on all alike); pyarrow's
    parser beside the scanner; the JIT's first compile (an empty numba cache)."""
    paths = sorted((folder / f"export-{items}").glob("*.json.gz"))
    runs: dict[str, list[float]] = {k: [] for k in ("inflate", "scan", "new", "parse")}
    for _ in range(BREAKDOWN_RUNS):
        for kind, cpus in runs.items():
            cpus.append(run_worker(kind, paths, folder / "unused")["cpu"])
    cpu = {kind: min(cpus) for kind, cpus in runs.items()}
    stages = {
        "inflating (ISA-L)": cpu["inflate"],
        "scanning to Item structs (numba)": cpu["scan"] - cpu["inflate"],
        "Arrow compute (unwrap, cast, select)": cpu["new"] - cpu["scan"],
    }
    rows = [[k, f"{v:.2f}", f"{v / cpu['new']:.0%}"] for k, v in stages.items()]
    rows.append(
        ["(pyarrow's parser to the same structs)", f"{cpu['parse'] - cpu['inflate']:.2f}", ""]
    )
    print(f"the vectorized conversion by stage, best of {BREAKDOWN_RUNS} runs each:")
    print_table(["stage", "CPU s", "share"], rows)
    rates = {kind: items / max(value, 1e-9) for kind, value in cpu.items()}
    with tempfile.TemporaryDirectory(prefix="storepulse-numba-") as empty:
        compile_cpu = run_worker("warm-up", [], folder, env={"NUMBA_CACHE_DIR": empty})
    print(
        f"conversion {rates['new']:,.0f} items/s/core; reading alone (inflating included): "
        f"scanner {rates['scan']:,.0f}, pyarrow's parser {rates['parse']:,.0f}; the JIT's first "
        f"compile (once per machine: numba's cache) {compile_cpu['warm_up_cpu']:.1f} s of CPU"
    )
    return {"stages": stages, "items_per_core_second": rates, "compile_cpu": compile_cpu}


def scaling(sizes: list[int], folder: Path) -> dict[str, Any]:
    """The vectorized conversion alone at each size: peak memory must not grow with items."""
    results = {}
    for size in sizes:
        paths = write_export(folder / f"export-{size}", size)
        results[size] = run_worker("new", paths, folder / "unused")
        for path in paths:
            path.unlink()  # a million items is ~150 MB of gzip
    print_table(HEADERS, [_row("new", size, r) for size, r in results.items()])
    small, large = results[sizes[0]], results[sizes[-1]]
    ratio = large["peak_rss"] / small["peak_rss"]
    print(
        f"vectorized conversion at {sizes[-1]:,} / at {sizes[0]:,} items: peak RSS {ratio:.2f}x "
        f"(target <= {TARGET_MEMORY_RATIO}x: flat); largest peak {_mib(large['peak_rss'])} MiB"
    )
    return {"sizes": {str(s): r for s, r in results.items()}, "peak_rss_ratio": ratio}


def targets(summary: dict[str, Any]) -> list[str]:
    """The targets missed (empty: all met)."""
    missed = []
    rate = summary["paths"]["new"]["items_per_core_second"]
    if rate < TARGET_ITEMS_PER_CORE:
        missed.append(f"vectorized conversion {rate:,.0f} items/s/core < {TARGET_ITEMS_PER_CORE:,}")
    if not summary["same_parquet"]:
        missed.append("vectorized staging wrote different Parquet bytes")
    ratio = summary.get("scaling", {}).get("peak_rss_ratio")
    if ratio is not None and ratio > TARGET_MEMORY_RATIO:
        missed.append(f"peak RSS grew {ratio:.2f}x with table size > {TARGET_MEMORY_RATIO}x")
    return missed


def measure(items: int, sizes: list[int], stages: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="storepulse-conversion-") as tmp:
        summary = compare(items, Path(tmp))
        if stages:
            summary["breakdown"] = breakdown(items, Path(tmp))
        if len(sizes) > 1:
            summary["scaling"] = scaling(sorted(sizes), Path(tmp))
    print(
        f"targets: vectorized conversion >= {TARGET_ITEMS_PER_CORE:,} items/s/core, identical "
        f"Parquet, peak RSS flat with size (<= {TARGET_MEMORY_RATIO}x)"
    )
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--sizes", default="")
    parser.add_argument("--breakdown", action="store_true", help="the conversion's CPU by stage")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.paths, args.out)))
        return None
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    summary = measure(args.items, sizes, stages=args.breakdown)
    summary["missed"] = targets(summary)
    for miss in summary["missed"]:
        print(f"TARGET MISSED: {miss}")
    if args.check and summary["missed"]:
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
