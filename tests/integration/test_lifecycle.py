"""Lifecycle rules applied to a versioned bucket on the embedded AWS (which stores the rules but
never runs them): apply, no-op, change, drift kept or removed, invalid rules, dry run, the bucket
from the stack's outputs, and the DAG's task functions through ``aws_default``."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from storepulse.config import REPO_ROOT, settings
from storepulse.lake.bucket import lake_bucket
from storepulse.lifecycle import (
    LifecycleConfig,
    LifecycleRuleError,
    apply_lifecycle,
    load_config,
    read_lifecycle,
    rules_by_id,
)
from storepulse_local.iam import DEPLOYER

BUCKET = "storepulse-dev-lake-123456789012"
STACK = "storepulse-dev-realtime"
DAG_FILE = REPO_ROOT / "dags" / "apply_lifecycle.py"
HAND_MADE = {
    "ID": "hand-made",
    "Filter": {"Prefix": "exports/"},
    "Status": "Enabled",
    "Expiration": {"Days": 30},
}

Client = Callable[[str], Any]


@dataclass
class Lake:
    s3: Any
    bucket: str
    puts: list[dict[str, Any]] = field(default_factory=list)

    def rules(self) -> dict[str, dict[str, Any]]:
        """The bucket's rules, normalised, by ID."""
        return rules_by_id(read_lifecycle(self.s3, self.bucket).rules)

    def apply(self, config: LifecycleConfig, **kwargs: Any) -> dict[str, Any]:
        return apply_lifecycle(self.s3, self.bucket, config, verify_delay=0, **kwargs).summary()

    def add_by_hand(self, rule: dict[str, Any]) -> None:
        rules = [*read_lifecycle(self.s3, self.bucket).rules, rule]
        self.s3.put_bucket_lifecycle_configuration(
            Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
        )
        self.puts.clear()


@pytest.fixture
def lake(aws_client: Client) -> Lake:
    """A versioned lake bucket; every lifecycle put made through its client is recorded."""
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    lake = Lake(s3, BUCKET)
    s3.meta.events.register(
        "before-call.s3.PutBucketLifecycleConfiguration",
        lambda params, **_: lake.puts.append(params),
    )
    return lake


@pytest.fixture
def declared() -> LifecycleConfig:
    return load_config()


def _edited(config: LifecycleConfig, rule_id: str, **changes: Any) -> LifecycleConfig:
    rules = copy.deepcopy(config.rules)
    next(r for r in rules if r["ID"] == rule_id).update(changes)
    return LifecycleConfig(rules, config.drift)


def test_apply_puts_the_declared_rules_once(lake: Lake, declared: LifecycleConfig) -> None:
    first = lake.apply(declared)
    assert first["applied"] is True
    assert first["added"] == [r["ID"] for r in declared.rules]
    assert (first["changed"], first["removed"], first["kept_drift"]) == ({}, [], [])
    assert len(lake.puts) == 1
    assert lake.rules() == rules_by_id(declared.rules)

    again = lake.apply(declared)
    assert again["applied"] is False
    assert (again["added"], again["changed"], again["unchanged"]) == ([], {}, len(declared.rules))
    assert len(lake.puts) == 1  # no second put


def test_a_changed_rule_is_diffed_and_applied(lake: Lake, declared: LifecycleConfig) -> None:
    lake.apply(declared)
    shorter = _edited(declared, "storepulse-staging", Expiration={"Days": 3})
    summary = lake.apply(shorter)
    assert summary["changed"] == {"storepulse-staging": ["Expiration"]}
    assert (summary["added"], summary["applied"]) == ([], True)
    assert lake.rules()["storepulse-staging"]["Expiration"] == {"Days": 3}
    assert len(lake.puts) == 2


def test_drift_is_reported_and_kept(
    lake: Lake, declared: LifecycleConfig, caplog: pytest.LogCaptureFixture
) -> None:
    lake.apply(declared)
    lake.add_by_hand(HAND_MADE)
    summary = lake.apply(declared)
    assert (summary["kept_drift"], summary["removed"], summary["applied"]) == (
        ["hand-made"],
        [],
        False,
    )
    assert lake.puts == []  # drift alone is no reason to put
    assert "hand-made: on the bucket, not in infra/lifecycle.json: kept" in caplog.text

    summary = lake.apply(_edited(declared, "storepulse-quality", Expiration={"Days": 365}))
    assert summary["applied"] is True
    assert set(lake.rules()) == {r["ID"] for r in declared.rules} | {"hand-made"}  # merged


def test_drift_is_removed_with_drift_remove(lake: Lake, declared: LifecycleConfig) -> None:
    lake.apply(declared)
    lake.add_by_hand(HAND_MADE)
    summary = lake.apply(LifecycleConfig(declared.rules, drift="remove"))
    assert (summary["removed"], summary["kept_drift"], summary["applied"]) == (
        ["hand-made"],
        [],
        True,
    )
    assert lake.rules() == rules_by_id(declared.rules)


def test_removing_every_rule_deletes_the_configuration(lake: Lake) -> None:
    lake.add_by_hand(HAND_MADE)
    summary = lake.apply(LifecycleConfig([], drift="remove"))
    assert (summary["removed"], summary["applied"]) == (["hand-made"], True)
    assert lake.rules() == {}


def test_an_invalid_rule_is_rejected_before_any_put(lake: Lake, declared: LifecycleConfig) -> None:
    lake.apply(declared)
    early = _edited(
        declared, "storepulse-raw", Transitions=[{"Days": 7, "StorageClass": "STANDARD_IA"}]
    )
    with pytest.raises(LifecycleRuleError, match=r"rule 'storepulse-raw': .*STANDARD_IA after 7"):
        lake.apply(early)
    assert len(lake.puts) == 1
    assert lake.rules() == rules_by_id(declared.rules)


def test_a_dry_run_logs_the_diff_and_puts_nothing(
    lake: Lake, declared: LifecycleConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="storepulse.lifecycle")
    summary = lake.apply(declared, dry_run=True)
    assert (summary["dry_run"], summary["applied"]) == (True, False)
    assert len(summary["added"]) == len(declared.rules)
    assert lake.puts == []
    assert lake.rules() == {}
    assert "+ storepulse-raw: " in caplog.text


# ------------------------------------------------------------------------------ the bucket, the DAG

LAKE_TEMPLATE = f"""
Resources:
  LakeBucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: {BUCKET}
Outputs:
  LakeBucket:
    Value: !Ref LakeBucket
"""


@pytest.fixture
def lake_stack(aws_client: Client) -> Lake:
    """A stand-in for the real-time stack: its lake bucket and the LakeBucket output only."""
    aws_client("cloudformation").create_stack(StackName=STACK, TemplateBody=LAKE_TEMPLATE)
    s3 = aws_client("s3")
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return Lake(s3, BUCKET)


def test_the_bucket_comes_from_the_param_the_environment_or_the_stack(
    lake_stack: Lake, aws_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfn = aws_client("cloudformation")
    assert lake_bucket(cfn) == lake_stack.bucket
    assert lake_bucket(cfn, "another-bucket") == "another-bucket"
    monkeypatch.setenv("STOREPULSE_LAKE_BUCKET", "configured-bucket")
    settings.cache_clear()
    assert lake_bucket(cfn) == "configured-bucket"
    assert lake_bucket(cfn, "another-bucket") == "another-bucket"  # a run's param first


@pytest.fixture
def dag_tasks(
    embedded_aws: str, lake_stack: Lake, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Callable[..., Any]]:
    """The DAG's task functions, run in-process with ``aws_default`` on the embedded AWS.

    (``dag.test()`` would need a migrated database and ~20 s more; parsing and conventions are
    covered by test_dag_integrity.)"""
    connection = {
        "conn_type": "aws",
        "login": DEPLOYER.access_key_id,
        "password": DEPLOYER.secret_access_key,
        "extra": {"endpoint_url": embedded_aws, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the connection alone must lead to the embedded AWS
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAG_FILE)).dags["apply_lifecycle"]
    # The @task functions; the stack sensor in front of them has its own tests (test_stack_sensor).
    return {
        task_id: task.python_callable
        for task_id, task in dag.task_dict.items()
        if hasattr(task, "python_callable")
    }


def test_the_dag_tasks_apply_then_find_nothing_to_do(
    dag_tasks: dict[str, Callable[..., Any]], lake_stack: Lake
) -> None:
    defaults = {"dry_run": False, "bucket": None}
    config = dag_tasks["validate_rules"]()
    bucket = dag_tasks["lake_bucket"](params=defaults)
    assert bucket == lake_stack.bucket  # from the stack's outputs

    first = dag_tasks["apply_rules"](config, bucket, params=defaults)
    assert (first["applied"], len(first["added"])) == (True, len(config["rules"]))
    assert lake_stack.rules() == rules_by_id(load_config().rules)

    again = dag_tasks["apply_rules"](config, bucket, params=defaults)
    assert (again["applied"], again["added"], again["changed"]) == (False, [], {})


def test_the_dag_dry_run_on_another_bucket(
    dag_tasks: dict[str, Callable[..., Any]], lake_stack: Lake
) -> None:
    other = "storepulse-dev-other-lake"
    lake_stack.s3.create_bucket(Bucket=other)
    params = {"dry_run": True, "bucket": other}
    config = dag_tasks["validate_rules"]()
    assert dag_tasks["lake_bucket"](params=params) == other
    summary = dag_tasks["apply_rules"](config, other, params=params)
    assert (summary["bucket"], summary["dry_run"], summary["applied"]) == (other, True, False)
    assert len(summary["added"]) == len(config["rules"])
    assert read_lifecycle(lake_stack.s3, other).rules == []
