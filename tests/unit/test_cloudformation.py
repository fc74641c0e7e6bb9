"""The real-time stack's template (infra/cloudformation/realtime.yaml), checked against cfn-lint and
against the code it deploys: the key layout, the Lambda's environment, least privilege."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import time_machine
from cfnlint.decode import cfn_yaml

from storepulse.config import REPO_ROOT
from storepulse.deploy.lint import lint_template
from storepulse.deploy.stack import (
    CODE_PARAMETERS,
    PARAMETERS_DIR,
    PLACEHOLDER,
    ParametersError,
    load_parameters,
)
from storepulse.lake.paths import QUARANTINE_EVENTS, RAW_EVENTS
from storepulse.layout import TABLE_SPECS, Table
from storepulse.simulator.backfill import shown_days
from storepulse.stream import window
from storepulse.stream.processor import StreamResources
from storepulse.stream.smoke import SUBSCRIBER_FILTER
from storepulse.stream.window import PlausibilityWindow

TEMPLATE = REPO_ROOT / "infra" / "cloudformation" / "realtime.yaml"
PARAMETER_FILES = sorted(PARAMETERS_DIR.glob("*.json"))
# Outputs the DAGs read (exported as storepulse-<env>-<output>).
DAG_OUTPUTS = {
    "StreamName",
    "StreamArn",
    "MetricsTable",
    "InventoryTable",
    "FactsTable",
    "SettingsTable",
    "LakeBucket",
    "AlertTopicArn",
    "DeadLetterQueueUrl",
    "DeadLetterQueueArn",
    "FunctionName",
    "FunctionArn",
    "EventSourceMappingId",
}
# StreamResources field -> logical id of the resource its environment variable must reference.
# A new field fails test_lambda_environment_sets_every_stream_resource until it is added here
# and to the function's environment in the template.
RESOURCE_OF_FIELD = {
    "metrics_table": "MetricsTable",
    "inventory_table": "InventoryTable",
    "facts_table": "FactsTable",
    "settings_table": "SettingsTable",
    "lake_bucket": "LakeBucket",
    "alert_topic_arn": "AlertTopic",
}
CHECKOV = REPO_ROOT / ".tools" / "checkov" / "bin" / "checkov"  # its own venv (Makefile)
HANDLER = REPO_ROOT / "lambdas" / "stream_processor" / "handler.py"
STATEFUL = {
    "AWS::DynamoDB::Table",
    "AWS::S3::Bucket",
    "AWS::Kinesis::Stream",
    "AWS::SQS::Queue",
    "AWS::KMS::Key",
}
QUICKSIGHT_ROLE = (
    "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/service-role/aws-quicksight-service-role-v0"
)
LOGS_POLICY = {
    "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}

Node = dict[str, Any]


@pytest.fixture(scope="module")
def template() -> Node:
    return cfn_yaml.load(str(TEMPLATE))


def resources_of_type(template: Node, kind: str) -> dict[str, Node]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


CAPTURE_CONDITION = "CapturesChanges"


def the_resource(template: Node, kind: str) -> Node:
    """The one resource of ``kind`` of the real-time path (the change capture's, created under
    its own condition, are tested on their own)."""
    (resource,) = [
        r
        for r in resources_of_type(template, kind).values()
        if r.get("Condition") != CAPTURE_CONDITION
    ]
    return resource


def capture_resources(template: Node, kind: str) -> list[Node]:
    return [
        r
        for r in resources_of_type(template, kind).values()
        if r.get("Condition") == CAPTURE_CONDITION
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_reports_no_error() -> None:
    findings = lint_template(TEMPLATE, regions=["us-east-1"])
    errors = [f for f in findings if f.is_error]
    assert not errors, "\n".join(str(f) for f in findings)


def test_checkov_reports_no_finding_and_every_suppression_says_why() -> None:
    """Offline: no policy download, no update check, no platform key."""
    assert CHECKOV.exists(), "checkov is not installed: run `make test` (it installs it)"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_"))}
    environ |= {"SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
    run = subprocess.run(
        [CHECKOV, "-f", TEMPLATE, "--framework", "cloudformation", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    report = json.loads(run.stdout)
    assert report["summary"]["parsing_errors"] == 0, run.stderr
    failed = report["results"]["failed_checks"]
    assert not failed, "\n".join(
        f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in failed
    )
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 8, f"{check['check_id']} {check['resource']}: {reason!r}"
    assert run.returncode == 0, run.stderr


def test_a_runtime_past_its_aws_deprecation_dates_is_a_warning_with_its_successor() -> None:
    """cfn-lint compares the runtime with AWS's calendar on the day it runs: the same template
    must lint the same any day, and the deploy log must say what to move to."""
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False):
        findings = lint_template(TEMPLATE, regions=["us-east-1"])
    calendar = [f for f in findings if f.calendar]
    assert not [f for f in findings if f.is_error], "\n".join(map(str, findings))
    assert calendar and all(f.level == "warning" for f in calendar)
    assert any("python3.11" in f.message and "python3.1" in f.message for f in calendar)


@pytest.mark.parametrize("table", list(Table))
def test_tables_match_the_key_layout(template: Node, table: Table) -> None:
    spec = TABLE_SPECS[table]
    expected = spec.create_table_kwargs(f"storepulse-${{EnvName}}-{table.value}")
    (resource,) = [
        r
        for r in resources_of_type(template, "AWS::DynamoDB::Table").values()
        if r["Properties"]["TableName"] == {"Fn::Sub": expected["TableName"]}
    ]
    props = resource["Properties"]
    for key in ("BillingMode", "KeySchema", "GlobalSecondaryIndexes"):
        assert props.get(key) == expected.get(key), key
    stream = expected.get("StreamSpecification")
    assert props.get("StreamSpecification") == (
        stream and {"StreamViewType": stream["StreamViewType"]}
    )
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(
        expected["AttributeDefinitions"], key=str
    )
    ttl = props.get("TimeToLiveSpecification")
    assert (ttl and ttl["Enabled"] and ttl["AttributeName"]) == spec.ttl_attribute
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


def test_no_table_outside_the_key_layout(template: Node) -> None:
    assert len(resources_of_type(template, "AWS::DynamoDB::Table")) == len(TABLE_SPECS)


def test_lambda_environment_sets_every_stream_resource(template: Node) -> None:
    function = the_resource(template, "AWS::Lambda::Function")["Properties"]
    variables = function["Environment"]["Variables"]
    assert variables["STOREPULSE_ENV"] == {"Ref": "EnvName"}
    # Each variable gets a marker naming what it references: a field read from anywhere else
    # (a default, a missing variable) cannot carry the right marker.
    # The window's parameters are numbers: markers 11 and 13.
    numbers = {"PlausiblePastDays": "11", "PlausibleFutureSeconds": "13"}
    environ = {
        name: numbers.get(value["Ref"], f"ref:{value['Ref']}") for name, value in variables.items()
    }
    resources = StreamResources.from_environment(environ)
    assert resources.window == PlausibilityWindow(timedelta(days=11), timedelta(seconds=13))
    for field in dataclasses.fields(StreamResources):
        if field.name == "window":
            continue
        assert field.name in RESOURCE_OF_FIELD, f"StreamResources.{field.name} is not deployed"
        assert getattr(resources, field.name) == f"ref:{RESOURCE_OF_FIELD[field.name]}", field.name


def test_the_window_parameters_match_what_the_function_accepts(template: Node) -> None:
    declared = template["Parameters"]
    past, future = declared["PlausiblePastDays"], declared["PlausibleFutureSeconds"]
    assert (past["Default"], past["MinValue"], past["MaxValue"]) == (
        window.DEFAULT_PAST_DAYS,
        1,
        window.MAX_PAST_DAYS,
    )
    assert (future["Default"], future["MinValue"], future["MaxValue"]) == (
        window.DEFAULT_FUTURE_SECONDS,
        0,
        window.MAX_FUTURE_SECONDS,
    )


def test_lambda_runs_the_handler_from_the_uploaded_zip(template: Node) -> None:
    function = the_resource(template, "AWS::Lambda::Function")["Properties"]
    assert function["Runtime"] == "python3.11"
    assert function["Handler"] == "handler.handler"
    assert function["Code"] == {
        "S3Bucket": {"Ref": "LambdaCodeBucket"},
        "S3Key": {"Ref": "LambdaCodeKey"},
    }
    assert "ReservedConcurrentExecutions" not in function


def test_lambda_role_is_least_privilege(template: Node) -> None:
    role = the_resource(template, "AWS::IAM::Role")["Properties"]
    assert role["ManagedPolicyArns"] == [LOGS_POLICY]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), f"wildcard action {action}"
        assert "*" not in as_list(statement["Resource"]), statement
    s3_resources = [
        r["Fn::Sub"]
        for s in statements
        if "s3:PutObject" in as_list(s["Action"])
        for r in as_list(s["Resource"])
    ]
    for prefix in (RAW_EVENTS, QUARANTINE_EVENTS):
        key = f"${{LakeBucket.Arn}}/{prefix}/dt=2026-11-26/hour=10/x.jsonl.gz"
        assert any(fnmatch(key, pattern) for pattern in s3_resources), prefix


def test_event_source_mapping_supports_exactly_once(template: Node) -> None:
    mapping = the_resource(template, "AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["ParallelizationFactor"] == 1
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    }


def test_every_table_of_the_lake_has_a_change_capture_mapping(template: Node) -> None:
    """Exactly-once like the stream processor's, from the oldest change; one per captured table."""
    mappings = capture_resources(template, "AWS::Lambda::EventSourceMapping")
    tables = {m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0] for m in mappings}
    captured = {f"{t.value.capitalize()}Table" for t, spec in TABLE_SPECS.items() if spec.stream}
    assert tables == captured == {"FactsTable", "MetricsTable", "InventoryTable"}
    for mapping in (m["Properties"] for m in mappings):
        assert mapping["FunctionName"] == {"Ref": "ChangeCaptureFunction"}
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BisectBatchOnFunctionError"] is True
        assert mapping["ParallelizationFactor"] == 1
        assert mapping["StartingPosition"] == "TRIM_HORIZON"
        assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["DeadLetterQueue", "Arn"]
        }


def test_the_change_capture_role_reads_the_streams_and_writes_only_changes(
    template: Node,
) -> None:
    (role,) = capture_resources(template, "AWS::IAM::Role")
    statements = {
        s["Sid"]: s
        for p in role["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
    }
    assert set(statements) == {"ReadTableStreams", "WriteChanges", "OnFailureDestination"}
    streams = statements["ReadTableStreams"]
    assert all(r["Fn::GetAtt"][1] == "StreamArn" for r in streams["Resource"])
    assert not any(
        a.startswith("s3:Get") for s in statements.values() for a in as_list(s["Action"])
    )
    writes = [r["Fn::Sub"] for r in statements["WriteChanges"]["Resource"]]
    assert writes == ["${LakeBucket.Arn}/changes/*", "${LakeBucket.Arn}/quarantine/changes/*"]
    (function,) = capture_resources(template, "AWS::Lambda::Function")
    assert function["Properties"]["Role"] == {"Fn::GetAtt": ["ChangeCaptureRole", "Arn"]}
    assert function["Properties"]["Runtime"] == "python3.12"  # pyarrow: manylinux_2_28


def _metrics_of(alarm: Node) -> set[tuple[str, str]]:
    props = alarm["Properties"]
    if "MetricName" in props:
        return {(props["Namespace"], props["MetricName"])}
    return {
        (m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"])
        for m in props["Metrics"]
        if "MetricStat" in m
    }


def test_alarms_notify_the_alert_topic(template: Node) -> None:
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm").values()
    assert set().union(*map(_metrics_of, alarms)) == {
        ("AWS/Lambda", "IteratorAge"),
        ("AWS/Lambda", "Errors"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("StorePulse", "quarantined"),
        ("StorePulse", "records"),
    }
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlertTopic"}]
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"  # no traffic, no alarm


def test_the_dead_letter_queue_alarm_fires_on_one_message(template: Node) -> None:
    (alarm,) = [
        a
        for a in resources_of_type(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/SQS"
    ]
    props = alarm["Properties"]
    assert props["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}
    ]
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)


def _handler_metrics() -> tuple[dict[str, str], set[str]]:
    """The handler's EMF namespace and service, and the metric names it emits."""
    tree = ast.parse(HANDLER.read_text())
    (call,) = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Metrics"
    ]
    setup = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    loops = [n.iter for n in ast.walk(tree) if isinstance(n, ast.For)]
    names = {e.value for loop in loops if isinstance(loop, ast.Tuple) for e in loop.elts}
    return setup, names


def test_the_quarantine_alarm_reads_what_the_handler_emits(template: Node) -> None:
    setup, emitted = _handler_metrics()
    (alarm,) = [
        a
        for a in resources_of_type(template, "AWS::CloudWatch::Alarm").values()
        if "Metrics" in a["Properties"]
    ]
    queries = {m["Id"]: m for m in alarm["Properties"]["Metrics"]}
    for name in ("quarantined", "records"):
        assert name in emitted
        metric = queries[name]["MetricStat"]["Metric"]
        assert metric["Namespace"] == setup["namespace"]
        assert metric["Dimensions"] == [{"Name": "service", "Value": setup["service"]}]
        assert queries[name]["MetricStat"]["Stat"] == "Sum"
    (returned,) = [q for q in queries.values() if q["ReturnData"]]
    assert "quarantined / records" in returned["Expression"]
    assert 0 < alarm["Properties"]["Threshold"] < 1  # a ratio


def test_stateful_resources_are_retained(template: Node) -> None:
    """The teardown DAG reports these as kept (storepulse.deploy.teardown)."""
    stateful = [r for r in template["Resources"].values() if r["Type"] in STATEFUL]
    assert {r["Type"] for r in stateful} == STATEFUL
    for resource in stateful:
        assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


def test_the_alert_topic_is_encrypted_with_its_own_rotated_key(template: Node) -> None:
    topic = the_resource(template, "AWS::SNS::Topic")["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "AlertTopicKey"}
    key = template["Resources"]["AlertTopicKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    root = statements["AccountAdministersAndDelegatesToIam"]
    assert root["Principal"] == {
        "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    }
    alarms = statements["CloudWatchAlarmsPublish"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(alarms["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    # The function role's use is granted by its own policy (the key policy delegates to IAM).
    role = the_resource(template, "AWS::IAM::Role")["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    (grant,) = [s for s in statements if s["Resource"] == {"Fn::GetAtt": ["AlertTopicKey", "Arn"]}]
    assert set(grant["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}


def test_quicksight_reads_only_the_curated_zone_and_the_rls_rules(template: Node) -> None:
    policy = the_resource(template, "AWS::S3::BucketPolicy")["Properties"]["PolicyDocument"]
    grants = [s for s in policy["Statement"] if s.get("Effect") == "Allow"]
    assert {s["Sid"] for s in grants} == {"QuickSightReadsCurated", "QuickSightListsCurated"}
    for grant in grants:
        assert grant["Condition"]["ArnEquals"] == {"aws:PrincipalArn": {"Fn::Sub": QUICKSIGHT_ROLE}}
        assert "*" not in json.dumps(grant["Principal"])
    read, listing = sorted(grants, key=lambda s: s["Sid"] != "QuickSightReadsCurated")
    assert (read["Action"], read["Resource"]) == (
        "s3:GetObject",
        [
            {"Fn::Sub": "${LakeBucket.Arn}/curated/*"},
            {"Fn::Sub": "${LakeBucket.Arn}/reference/store_access/*"},
        ],
    )
    assert (listing["Action"], listing["Resource"]) == (
        "s3:ListBucket",
        {"Fn::GetAtt": ["LakeBucket", "Arn"]},
    )
    prefixes = ["curated", "curated/*", "reference/store_access/*"]
    assert listing["Condition"]["StringLike"] == {"s3:prefix": prefixes}


def test_outputs_are_exported_for_the_dags(template: Node) -> None:
    outputs = template["Outputs"]
    assert set(outputs) >= DAG_OUTPUTS
    for name in DAG_OUTPUTS:
        assert outputs[name]["Export"]["Name"] == {"Fn::Sub": f"storepulse-${{EnvName}}-{name}"}


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 26, 11, 0, tzinfo=UTC),
        datetime(2027, 11, 3, 22, 59, tzinfo=UTC),  # 23:59 in Paris, 3 days after it fell back
        datetime(2027, 3, 28, 21, 59, tzinfo=UTC),  # 23:59 in Paris, the day it sprang forward
    ],
)
def test_the_demo_window_accepts_the_history_the_simulator_sends(now: datetime) -> None:
    """``make up`` deploys with dev.json and first sends the days the dashboard compares, from
    last week's local midnight on: all of it must be counted, with hours to spare to send it."""
    values = _values(PARAMETERS_DIR / "dev.json")
    oldest = shown_days(now, "Europe/Paris")[0].start  # the demo business's time zone
    assert now - oldest + timedelta(hours=12) <= timedelta(days=int(values["PlausiblePastDays"]))


def _values(path: Path) -> dict[str, str]:
    parameters = json.loads(path.read_text())
    values = {p["ParameterKey"]: p["ParameterValue"] for p in parameters}
    assert len(values) == len(parameters), "a parameter is set twice"
    return values


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_parameters_are_declared_and_valid(template: Node, path: Path) -> None:
    declared = template["Parameters"]
    values = _values(path)
    assert values["EnvName"] == path.stem
    assert set(values) <= set(declared) - CODE_PARAMETERS
    required = {name for name, p in declared.items() if "Default" not in p}
    assert required <= set(values) | CODE_PARAMETERS
    for name, value in values.items():
        if value.startswith(PLACEHOLDER):
            continue  # load_parameters refuses to deploy it (tested below)
        parameter = declared[name]
        assert value in parameter.get("AllowedValues", [value]), name
        assert re.fullmatch(parameter.get("AllowedPattern", ".*"), value), name


def test_dev_does_without_tls_only_for_the_embedded_aws() -> None:
    assert _values(PARAMETERS_DIR / "dev.json")["EnforceTls"] == "false"  # moto: every S3 call 403


def test_prod_enforces_tls_and_must_name_its_alert_address() -> None:
    values = _values(PARAMETERS_DIR / "prod.json")
    assert values["EnforceTls"] == "true"
    assert values["AlertEmail"].startswith(PLACEHOLDER)


def test_an_environment_without_its_own_parameters_is_not_deployed() -> None:
    with pytest.raises(ParametersError, match=r"no stack parameters for environment 'staging'"):
        load_parameters("staging", code_bucket="b", code_key="k")


def test_prod_is_not_deployed_with_its_placeholder_alert_address() -> None:
    with pytest.raises(ParametersError, match=r"prod.json leaves AlertEmail as a placeholder"):
        load_parameters("prod", code_bucket="b", code_key="k")


def test_prod_deploys_with_tls_and_its_address_once_set(tmp_path: Path) -> None:
    text = (PARAMETERS_DIR / "prod.json").read_text()
    values = _values(PARAMETERS_DIR / "prod.json")
    (tmp_path / "prod.json").write_text(text.replace(values["AlertEmail"], "ops@shop.example"))
    loaded = load_parameters("prod", code_bucket="b", code_key="k", parameters_dir=tmp_path)
    assert {p["ParameterKey"]: p["ParameterValue"] for p in loaded} == values | {
        "AlertEmail": "ops@shop.example",
        "LambdaCodeBucket": "b",
        "LambdaCodeKey": "k",
    }


def test_a_parameter_file_for_another_environment_is_refused(tmp_path: Path) -> None:
    (tmp_path / "qa.json").write_text((PARAMETERS_DIR / "dev.json").read_text())
    with pytest.raises(ParametersError, match=r"sets EnvName='dev', not 'qa'"):
        load_parameters("qa", code_bucket="b", code_key="k", parameters_dir=tmp_path)


def test_optional_parts_follow_their_parameters(template: Node) -> None:
    conditions = template["Conditions"]
    policy = the_resource(template, "AWS::S3::BucketPolicy")
    assert "Condition" not in policy  # the QuickSight grant is in every environment
    when, deny, otherwise = policy["Properties"]["PolicyDocument"]["Statement"][0]["Fn::If"]
    assert conditions[when] == {"Fn::Equals": [{"Ref": "EnforceTls"}, "true"]}
    assert (deny["Sid"], otherwise) == ("DenyInsecureTransport", {"Ref": "AWS::NoValue"})
    subscription = the_resource(template, "AWS::SNS::Subscription")
    assert conditions[subscription["Condition"]] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]
    }
    assert subscription["Properties"]["FilterPolicy"] == SUBSCRIBER_FILTER  # no smoke alerts
    stream = the_resource(template, "AWS::Kinesis::Stream")["Properties"]
    when, shards, otherwise = stream["ShardCount"]["Fn::If"]
    assert conditions[when] == {"Fn::Equals": [{"Ref": "StreamMode"}, "PROVISIONED"]}
    assert (shards, otherwise) == ({"Ref": "ShardCount"}, {"Ref": "AWS::NoValue"})
