"""QuickSight access control from the dashboard grants: the rules, the grants' validation, the
permission changes, and the declarations' checks (no servers)."""

from __future__ import annotations

import copy
import io
import json
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from storepulse import quicksight as qs
from storepulse.quicksight import access
from storepulse.settings import StoreAccess

ACCOUNT = "123456789012"
USER = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:user/default/"


@pytest.fixture(scope="module")
def decl() -> qs.Declarations:
    return qs.load_declarations(env="dev", account_id=ACCOUNT, lake_bucket="lake")


def _grant(username: str, *stores: str, role: str | None = "manager") -> StoreAccess:
    email = f"{username}@example.com" if role else None
    return StoreAccess(
        username=username, store_ids=stores, all_stores=not stores, role=role, email=email
    )


def test_the_rules_are_the_grants_store_limits(decl: qs.Declarations) -> None:
    grants = [
        _grant("zoe", "s-002", "s-001"),
        _grant("olga", role="owner"),
        _grant("dash-only", "s-001", role=None),  # the dashboard only: no QuickSight rule
    ]
    rows = access.rules(decl, grants, region="us-east-1", account_id=ACCOUNT)
    assert rows == [
        {"userarn": USER + "olga", "grouparn": None, "store_id": None},  # every store
        {"userarn": USER + "zoe", "grouparn": None, "store_id": "s-001"},
        {"userarn": USER + "zoe", "grouparn": None, "store_id": "s-002"},
    ]
    table = pq.read_table(io.BytesIO(access.rules_parquet(decl.row_level_security, rows)))
    assert table.column_names == ["userarn", "grouparn", "store_id"]
    assert table.to_pylist() == rows


def test_a_quicksight_role_needs_an_email_and_an_owner_sees_every_store() -> None:
    with pytest.raises(ValidationError, match="needs the user's email"):
        StoreAccess(username="bob", store_ids=("s-001",), role="viewer")
    with pytest.raises(ValidationError, match="an owner sees every store"):
        _grant("olga", "s-001", role="owner")
    with pytest.raises(ValidationError):
        _grant("bob", "s-001", role="admin")
    grant = _grant("bob", "s-001", role="viewer")
    assert StoreAccess.from_item(grant.to_item()) == grant
    plain = _grant("carol", "s-001", role=None)
    assert "role" not in plain.to_item() and StoreAccess.from_item(plain.to_item()) == plain


def test_permission_changes_touch_only_the_declared_principals() -> None:
    current = [
        {"Principal": "arn:group/owners", "Actions": ["a", "b"]},
        {"Principal": "arn:group/viewers", "Actions": ["a", "stale"]},
        {"Principal": "arn:user/admin", "Actions": ["a", "b", "c"]},  # not ours: left alone
    ]
    wanted = {"arn:group/owners": ["a", "b"], "arn:group/viewers": ["a"], "arn:group/new": ["a"]}
    grants, revokes = access._permission_changes(current, wanted)
    assert grants == [{"Principal": "arn:group/new", "Actions": ["a"]}]
    assert revokes == [{"Principal": "arn:group/viewers", "Actions": ["stale"]}]
    assert access._permission_changes(current[:1], {"arn:group/owners": ["a", "b"]}) == ([], [])


def test_each_role_gets_its_actions() -> None:
    assert "quicksight:UpdateDataSetPermissions" in qs.requests.role_actions("owner", "data_set")
    manager = qs.requests.role_actions("manager", "data_set")
    assert "quicksight:DescribeDataSet" in manager and "quicksight:UpdateDataSet" not in manager
    assert qs.requests.role_actions("viewer", "data_set") == []  # through the dashboard only
    assert "quicksight:QueryDashboard" in qs.requests.role_actions("viewer", "dashboard")


class FakeS3:
    """head_object/put_object of one bucket, with object metadata."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 (boto3's)
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")
        return {"Metadata": self.objects[Key][1]}

    def put_object(self, Bucket: str, Key: str, Body: bytes, Metadata: dict[str, str]) -> None:  # noqa: N803
        self.objects[Key] = (Body, Metadata)


def test_the_rules_file_is_rewritten_only_when_it_changes(decl: qs.Declarations) -> None:
    s3 = FakeS3()
    rows = access.rules(decl, [_grant("zoe", "s-001")], region="us-east-1", account_id=ACCOUNT)
    assert access.write_rules(s3, decl, rows) == ("reference/store_access/rules.parquet", True)
    assert access.write_rules(s3, decl, rows)[1] is False
    assert access.write_rules(s3, decl, rows[:0])[1] is True  # revoked: an empty rules file


def test_the_declarations_are_checked_for_access_control() -> None:
    raw = json.loads(qs.DECLARATIONS_FILE.read_text())
    both = copy.deepcopy(raw)
    columns = both["row_level_security"]["data_set"]["columns"]
    columns.append({"name": "username", "type": "string", "quicksight_name": "UserName"})
    assert any("not both" in p for p in qs.validate(both))
    no_viewer = copy.deepcopy(raw)
    del no_viewer["permissions"]["groups"]["viewer"]
    assert any("one group per role" in p for p in qs.validate(no_viewer))
    shared = copy.deepcopy(raw)
    shared["permissions"]["groups"]["viewer"] = shared["permissions"]["groups"]["manager"]
    assert any("share the group" in p for p in qs.validate(shared))


def test_a_snapshot_from_before_access_control_restores_empty_principals() -> None:
    """The embedded AWS's snapshots pickle the local QuickSight's accounts: one taken before
    users, groups, permissions and SPICE rows were kept restores them empty."""
    from storepulse_local.quicksight import Account

    old = Account()
    for name in ("users", "groups", "permissions", "spice"):
        del old.__dict__[name]
    old.data_sets["ds"] = {"Name": "orders"}
    restored = pickle.loads(pickle.dumps(old))
    assert restored.data_sets == {"ds": {"Name": "orders"}}
    assert (restored.users, restored.groups, restored.permissions, restored.spice) == (
        {},
        {},
        {},
        {},
    )


class FakeIngestions:
    """ListIngestions (paginated) and CreateIngestion of one data set."""

    def __init__(self, *created: datetime) -> None:
        self.ingestions = [
            {"IngestionId": f"i-{n}", "CreatedTime": t, "IngestionStatus": "COMPLETED"}
            for n, t in enumerate(created)
        ]

    def get_paginator(self, name: str) -> Any:
        assert name == "list_ingestions"
        return SimpleNamespace(paginate=lambda **_: [{"Ingestions": list(self.ingestions)}])

    def create_ingestion(self, **request: Any) -> None:
        self.ingestions.append(
            {
                "IngestionId": request["IngestionId"],
                "CreatedTime": NOON,
                "IngestionStatus": "INITIALIZED",
            }
        )


NOON = datetime(2026, 3, 3, 12, tzinfo=UTC)


def test_the_rules_ingestion_counts_against_the_manual_quota(decl: qs.Declarations) -> None:
    """With the day's quota spent, the changed rules are not written (so the next sync tries
    again) and the sync fails saying when it may; a slot free again, they are written and
    ingested."""
    limited = replace(decl, quota=2)
    s3, report = FakeS3(), access.AccessReport()
    rows = access.rules(decl, [_grant("zoe", "s-001")], region="us-east-1", account_id=ACCOUNT)
    spent = FakeIngestions(NOON - timedelta(hours=23), NOON - timedelta(hours=1))
    where = {"account_id": ACCOUNT, "clock": lambda: NOON, "report": report}

    with pytest.raises(access.AccessError, match="daily quota reached: 2 manual ingestions"):
        access._refresh_rules(spent, s3, limited, rows, **where)
    assert not s3.objects and len(spent.ingestions) == 2

    freed = FakeIngestions(NOON - timedelta(hours=25), NOON - timedelta(hours=1))
    access._refresh_rules(freed, s3, limited, rows, **where)
    assert report.rules_changed and len(s3.objects) == 1 and len(freed.ingestions) == 3
    assert (
        report.ingestion and report.ingestion["ingestion_id"] == freed.ingestions[-1]["IngestionId"]
    )


def test_the_demos_grants_give_quicksight_an_owner_and_a_one_store_manager(
    decl: qs.Declarations,
) -> None:
    from storepulse.simulator import BusinessModel
    from storepulse.simulator.seed import demo_grants

    model = BusinessModel.generate(seed=7, stores=2)
    rows = access.rules(decl, demo_grants(model, "admin"), region="us-east-1", account_id=ACCOUNT)

    assert rows == [
        {"userarn": USER + "admin", "grouparn": None, "store_id": None},
        {"userarn": USER + "manager-s-001", "grouparn": None, "store_id": "s-001"},
    ]
