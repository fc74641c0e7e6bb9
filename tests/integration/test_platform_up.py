"""`make up` from the user's side: it reports ready, Airflow and the embedded AWS answer, the
real-time stack was deployed by its DAG, simulated traffic becomes DynamoDB totals, an alert
reaches the inbox, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import psutil
import pytest
from boto3.dynamodb.conditions import Key

from storepulse.config import REPO_ROOT, settings
from storepulse.events import InventoryStockLevelV1
from storepulse.layout import Table, table_name
from storepulse.producer import KinesisProducer
from storepulse.simulator.model import BusinessModel
from storepulse_local.embedded_aws import is_healthy
from storepulse_local.platform import realtime
from storepulse_local.platform.airflow_local import AirflowClient
from storepulse_local.platform.demo import INBOX
from storepulse_local.platform.realtime import DEPLOY_DAG
from tests.platform_process import Platform


def test_up_reports_ready_with_both_services_answering(platform: Platform, password: str) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{platform.airflow_port}/") as response:
        assert response.status == 200
    assert is_healthy(f"http://127.0.0.1:{platform.aws_port}")
    assert password


def test_a_dag_reaches_the_embedded_aws_through_aws_default(
    platform: Platform, password: str
) -> None:
    client = AirflowClient(f"http://127.0.0.1:{platform.airflow_port}", "admin", password)
    client.login()
    run_id = client.trigger("platform_check")
    assert client.wait_for_run("platform_check", run_id, timeout=180) == "success"


@pytest.fixture(scope="module")
def airflow(platform: Platform, password: str) -> AirflowClient:
    client = AirflowClient(f"http://127.0.0.1:{platform.airflow_port}", "admin", password)
    client.login()
    return client


@pytest.fixture
def aws(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{platform.aws_port}")
    return boto3.Session(region_name="us-east-1")


def test_the_deploy_dag_ran_successfully(airflow: AirflowClient) -> None:
    runs = airflow.dag_runs(DEPLOY_DAG)
    assert [run["state"] for run in runs] == ["success"]


def _business_totals(aws: boto3.Session) -> dict[str, Decimal]:
    metrics = aws.resource("dynamodb").Table(table_name(Table.METRICS))
    totals: dict[str, Decimal] = defaultdict(Decimal)
    year = datetime.now(UTC).year
    for pk in {f"ALL#DAY#{year - 1}", f"ALL#DAY#{year}", f"ALL#DAY#{year + 1}"}:
        for item in metrics.query(KeyConditionExpression=Key("pk").eq(pk))["Items"]:
            for name in ("page_views", "foot_traffic", "orders", "revenue"):
                totals[name] += Decimal(item.get(name, 0))
    return totals


def test_totals_follow_the_simulated_traffic(aws: boto3.Session) -> None:
    before = _business_totals(aws)
    deadline = time.monotonic() + 60
    while (after := _business_totals(aws)) == before and time.monotonic() < deadline:
        time.sleep(2)
    assert after != before
    assert all(after[name] >= before[name] for name in before)


def test_a_low_stock_alert_reaches_the_inbox(platform: Platform, aws: boto3.Session) -> None:
    """A stock count at the reorder point alerts. The simulator is paused meanwhile: its own
    restocks and counts, later in event time, would otherwise decide the level first."""
    platform.pause_traffic()
    try:
        _count_at_reorder_point_alerts(aws)
    finally:
        platform.resume_traffic()


def _count_at_reorder_point_alerts(aws: boto3.Session) -> None:
    product = BusinessModel.generate(seed=realtime.DEMO_SEED, stores=2).catalogue[0]
    count = InventoryStockLevelV1(
        event_id=str(uuid.uuid4()),
        store_id="s-001",
        occurred_at=datetime.now(UTC),
        sku=product.sku,
        quantity_on_hand=product.reorder_point,
    )
    KinesisProducer(
        stream_name=settings().resource_name("events"), client=aws.client("kinesis")
    ).send([count])

    sqs = aws.client("sqs")
    inbox = sqs.get_queue_url(QueueName=settings().resource_name(INBOX))["QueueUrl"]
    # Behind the simulator's history on its shard: minutes on a busy machine.
    deadline, found = time.monotonic() + 240, []
    while not found and time.monotonic() < deadline:
        for message in sqs.receive_message(
            QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=2
        ).get("Messages", []):
            body = json.loads(json.loads(message["Body"])["Message"])
            if body["type"] == "low_stock" and body["details"]["sku"] == product.sku:
                found.append(body)
    assert found and found[0]["store_id"] == "s-001"


def test_the_demo_admin_sees_every_store_and_secrets_are_private(
    platform: Platform, password: str
) -> None:
    """Dashboard access fails closed: only the demo's explicit grant lets admin see the stores."""
    login = urllib.request.Request(
        f"{platform.url}/auth/token",
        data=json.dumps({"username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(login) as response:
        token = json.loads(response.read())["access_token"]
    me_request = urllib.request.Request(
        f"{platform.url}/dashboard/api/me", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(me_request) as response:
        me = json.loads(response.read())
    assert (me["all_stores"], me["can_edit"], len(me["stores"])) == (True, True, 2)
    home = platform.state_dir / "airflow"
    for secret in (home / "simple_auth_manager_passwords.json.generated", home / "jwt_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret


def test_a_second_up_is_refused(platform: Platform, password: str) -> None:
    env = {**os.environ, "STOREPULSE_STATE_DIR": str(platform.state_dir)}
    second = subprocess.run(
        [sys.executable, "-m", "storepulse_local.platform", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert second.returncode != 0
    assert "already running" in second.stderr


def test_ctrl_c_stops_every_process(platform: Platform, password: str) -> None:
    started = platform.started_pids()
    tree = [
        p.pid
        for pid in started
        for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    ]

    platform.process.send_signal(signal.SIGINT)
    assert platform.process.wait(timeout=90) == 0

    deadline = time.monotonic() + 10
    while (
        alive := [
            pid
            for pid in tree
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        ]
    ) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive == []
    assert not (platform.state_dir / "platform.json").exists()
