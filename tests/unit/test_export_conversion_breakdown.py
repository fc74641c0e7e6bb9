"""The stages ``benchmarks.export_conversion --breakdown`` measures read the whole export: the
inflating worker every byte of JSON, the parser workers every item (no attribute kept, or the
table's)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import export_conversion


def test_each_stage_reads_every_item(tmp_path: Path) -> None:
    paths = [str(p) for p in export_conversion.write_export(tmp_path, 250)]

    assert export_conversion._inflation(paths) == export_conversion._json_bytes(
        list(map(Path, paths))
    )
    assert export_conversion._parse(paths, typed=False) == 250
    assert export_conversion._parse(paths, typed=True) == 250
