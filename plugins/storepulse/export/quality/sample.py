"""The staged rows against the table: a sample of them read back with ``GetItem``.

Whatever the strategy (full export, scan, the day's changes), a staged row must be what the table
holds for its item. For the data sets whose rows each stand for one item (orders, refunds, a
store's day, a customer, a stock level), an evenly spaced sample of the staged rows (by key:
the same sample for the same day) has its items read back (strongly consistent) and rebuilt into
rows by the data set's own builder. A row can disagree because its item changed after the export
(a late event during the run): that is logged. More than half the sample of a closed day's data
set disagreeing is an export that does not reflect the table (a missed window, a wrong merge):
the audit fails. Whether the day is closed is seen as ``live.settle`` sees it: before failing,
the disagreeing items are read again for a while, and an item that changes meanwhile belongs to a
day that is still moving (a POS syncing late; the demo's yesterday, which runs on live): it is
logged, not counted. Items that hold still on a disagreement fail the audit. Snapshots (stock
levels, customers) are read back and logged only: a live table's stock levels move with every
sale between the export and the audit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from storepulse import stock_levels
from storepulse.export.datasets import DATASETS, Row
from storepulse.export.dynamodb_json import deserialize_item
from storepulse.layout import Table

log = logging.getLogger(__name__)

SAMPLE_SIZE: Final = 20


def _store_day(kind: str) -> Callable[[Row], tuple[str, str]]:
    return lambda r: (
        f"S#{r['store_id']}#{kind}#{r['business_date'].year}",
        r["business_date"].isoformat(),
    )


# The item each sampled row comes from: (pk, sk).
ITEM_OF_ROW: Final[dict[str, Callable[[Row], tuple[str, str]]]] = {
    "orders": lambda r: (f"ORDER#{r['order_id']}", "ORDER"),
    "refunds": lambda r: (f"REFUND#{r['refund_id']}", "REFUND"),
    "daily_store_metrics": _store_day("DAY"),
    "customers": lambda r: (f"CUSTOMER#{r['customer_id']}", "PROFILE"),
    # a stock level: the level item holding its SKU (``level_item`` in ``check_sample``)
    "inventory_snapshot": lambda r: (f"S#{r['store_id']}", r["sku"]),
}


@dataclass(frozen=True)
class SampleCheck:
    dataset: str
    checked: int
    disagreeing: tuple[str, ...]  # "pk/sk: what differs"
    moving: tuple[str, ...] = ()  # the disagreeing items that changed while read again

    @property
    def failed(self) -> bool:
        if DATASETS[self.dataset].snapshot:
            return False
        return _fails(self.checked, len(self.disagreeing) - len(self.moving))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "checked": self.checked,
            "disagreeing": self.disagreeing,
            "moving": self.moving,
        }


def _fails(checked: int, holding_still: int) -> bool:
    return checked > 0 and 2 * holding_still > checked


def sample(rows: Sequence[Row], size: int = SAMPLE_SIZE) -> list[Row]:
    """Evenly spaced rows (staged rows are sorted by key: the same sample every time)."""
    if len(rows) <= size:
        return list(rows)
    step = len(rows) / size
    return [rows[int(i * step)] for i in range(size)]


def _difference(staged: Row, table: Row | None) -> str | None:
    if table is None:
        return "not in the table"
    differing = sorted(c for c in staged if staged[c] != table.get(c))
    return f"differs in {', '.join(differing)}" if differing else None


def check_sample(
    dynamodb: Any,
    table_name: str,
    dataset_name: str,
    rows: Sequence[Row],
    day: date,
    size: int = SAMPLE_SIZE,
    *,
    attempts: int = 6,
    pause: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> SampleCheck:
    """GetItem for a sample of ``rows`` (one data set's staged rows) in ``table_name`` (a
    low-level boto3 client), each rebuilt into its row and compared with the staged one; when
    the disagreements would fail the audit, they are read again up to ``attempts`` times,
    ``pause`` seconds apart, and those whose item changed are the day still moving."""
    dataset = DATASETS[dataset_name]

    def get(pk: str, sk: str) -> dict[str, Any] | None:
        key = {"pk": {"S": pk}, "sk": {"S": sk}}
        return dynamodb.get_item(TableName=table_name, Key=key, ConsistentRead=True).get("Item")

    shards: dict[str, int | None] = {}

    def level_item(row: Row) -> tuple[str, str]:
        """The level item holding a stock row's SKU (``storepulse.stock_levels``)."""
        store = row["store_id"]
        if store not in shards:
            found = get(*stock_levels.shards_key(store).as_item().values())
            shards[store] = int(found[stock_levels.SHARDS]["N"]) if found else None
        count = shards[store]
        key = stock_levels.legacy_key(store, row["sku"])
        if count is not None:
            key = stock_levels.levels_key(store, row["sku"], count)
        return key.pk, key.sk

    picked = sample(rows, size)
    disagreeing: dict[tuple[str, str], tuple[str, Any]] = {}  # item -> (what differs, as read)
    for row in picked:
        inventory = dataset.table is Table.INVENTORY
        pk, sk = level_item(row) if inventory else ITEM_OF_ROW[dataset_name](row)
        raw = get(pk, sk)
        rebuilt = dataset.rows(deserialize_item(raw), day) if raw else []
        key = tuple(row[c] for c in dataset.key)
        match = next((r for r in rebuilt if tuple(r[c] for c in dataset.key) == key), None)
        if (difference := _difference(row, match)) is not None:
            disagreeing[(pk, sk)] = (f"{pk}/{sk}: {difference}", raw)
    moving: list[str] = []
    still = dict(disagreeing)
    for _ in range(attempts if not dataset.snapshot else 0):
        if not _fails(len(picked), len(still)):
            break
        sleep(pause)
        for (pk, sk), (described, raw) in list(still.items()):
            if get(pk, sk) != raw:
                moving.append(described)
                del still[(pk, sk)]
    described_all = tuple(described for described, _ in disagreeing.values())
    return SampleCheck(dataset_name, len(picked), described_all, tuple(moving))


def check_samples(
    dynamodb: Any,
    table_names: Mapping[str, str],
    staged_rows: Mapping[str, Sequence[Row]],
    day: date,
) -> list[SampleCheck]:
    """``check_sample`` for every sampled data set staged (``table_names``: table -> name)."""
    checks = []
    for name in ITEM_OF_ROW:
        if name in staged_rows:
            table: Table = DATASETS[name].table
            checks.append(
                check_sample(dynamodb, table_names[table.value], name, staged_rows[name], day)
            )
    for check in checks:
        log.info(
            "%s: %d staged row(s) read back from the table, %d disagree%s%s",
            check.dataset,
            check.checked,
            len(check.disagreeing),
            f" ({len(check.moving)} changed while read again: the day is still moving)"
            if check.moving
            else "",
            f": {'; '.join(check.disagreeing[:5])}" if check.disagreeing else "",
        )
    return checks
