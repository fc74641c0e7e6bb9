"""The real-time stack created from its template with the dev parameters, on the embedded AWS,
and checked through each service's own API. moto skips some types silently (alarms, email
subscription, the lake's bucket policy); the unit tests check those in the template."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from storepulse.config import REPO_ROOT
from storepulse.layout import TABLE_SPECS
from storepulse.stream.processor import StreamResources
from storepulse.stream.window import PlausibilityWindow
from tests.unit.test_cloudformation import DAG_OUTPUTS

TEMPLATE = REPO_ROOT / "infra" / "cloudformation" / "realtime.yaml"
DEV_PARAMETERS = REPO_ROOT / "infra" / "cloudformation" / "parameters" / "dev.json"
CODE_BUCKET = "storepulse-dev-artifacts"
ACCOUNT = "123456789012"  # moto's default account

# moto warns once per unsupported type it skips; the alarms are checked by the unit tests.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Tried to parse AWS.+CloudWatch.+Alarm:UserWarning"),
    pytest.mark.filterwarnings("ignore:Tried to parse AWS.+S3.+BucketPolicy:UserWarning"),
]

SETTINGS_OF_MAPPING = {  # from the template and dev.json
    "StartingPosition": "TRIM_HORIZON",
    "BatchSize": 100,
    "MaximumBatchingWindowInSeconds": 0,
    "FunctionResponseTypes": ["ReportBatchItemFailures"],
    "BisectBatchOnFunctionError": True,
    "MaximumRetryAttempts": 5,
    "MaximumRecordAgeInSeconds": 3600,
    "ParallelizationFactor": 1,
}

Client = Callable[[str], Any]


def _code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    return buffer.getvalue()


@pytest.fixture
def outputs(aws_client: Client) -> dict[str, str]:
    """Create the stack like the deploy DAG does; return its outputs."""
    code = _code_zip()
    key = f"stream-processor/{hashlib.sha256(code).hexdigest()}.zip"
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=CODE_BUCKET)
    s3.put_object(Bucket=CODE_BUCKET, Key=key, Body=code)
    parameters = [
        *json.loads(DEV_PARAMETERS.read_text()),
        {"ParameterKey": "LambdaCodeBucket", "ParameterValue": CODE_BUCKET},
        {"ParameterKey": "LambdaCodeKey", "ParameterValue": key},
    ]
    cfn = aws_client("cloudformation")
    cfn.create_stack(
        StackName="storepulse-dev-realtime",
        TemplateBody=TEMPLATE.read_text(),
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM"],
    )
    # A failing resource leaves a moto stack CREATE_IN_PROGRESS: a few seconds, not the default.
    cfn.get_waiter("stack_create_complete").wait(
        StackName="storepulse-dev-realtime", WaiterConfig={"Delay": 1, "MaxAttempts": 10}
    )
    (stack,) = cfn.describe_stacks(StackName="storepulse-dev-realtime")["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    exports = {e["Name"]: e["Value"] for e in cfn.list_exports()["Exports"]}
    assert exports == {f"storepulse-dev-{name}": outputs[name] for name in DAG_OUTPUTS}
    return outputs


def test_stream_tables_and_lake_exist(aws_client: Client, outputs: dict[str, str]) -> None:
    stream = aws_client("kinesis").describe_stream_summary(StreamName=outputs["StreamName"])
    assert stream["StreamDescriptionSummary"]["StreamARN"] == outputs["StreamArn"]
    assert outputs["StreamName"] == "storepulse-dev-events"

    dynamodb = aws_client("dynamodb")
    for table, spec in TABLE_SPECS.items():
        name = outputs[f"{table.value.capitalize()}Table"]
        expected = spec.create_table_kwargs(f"storepulse-dev-{table.value}")
        described = dynamodb.describe_table(TableName=name)["Table"]
        assert described["TableName"] == expected["TableName"]
        assert described["KeySchema"] == expected["KeySchema"]
        indexes = [
            {k: i[k] for k in ("IndexName", "KeySchema", "Projection")}
            for i in described.get("GlobalSecondaryIndexes", [])
        ]
        assert indexes == expected.get("GlobalSecondaryIndexes", [])

    s3 = aws_client("s3")
    assert outputs["LakeBucket"] == f"storepulse-dev-lake-{ACCOUNT}"
    encryption = s3.get_bucket_encryption(Bucket=outputs["LakeBucket"])
    (rule,) = encryption["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # dev.json sets EnforceTls=false: the lake is usable on the embedded AWS.
    s3.put_object(Bucket=outputs["LakeBucket"], Key="raw/events/probe", Body=b"{}")


def test_topic_queue_function_and_mapping_exist(
    aws_client: Client, outputs: dict[str, str]
) -> None:
    aws_client("sns").get_topic_attributes(TopicArn=outputs["AlertTopicArn"])
    queue = aws_client("sqs").get_queue_attributes(
        QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    assert queue["QueueArn"] == outputs["DeadLetterQueueArn"]
    assert queue["MessageRetentionPeriod"] == "1209600"

    lam = aws_client("lambda")
    function = lam.get_function_configuration(FunctionName=outputs["FunctionName"])
    assert function["FunctionArn"] == outputs["FunctionArn"]
    assert (function["Runtime"], function["Handler"]) == ("python3.11", "handler.handler")
    resources = StreamResources.from_environment(function["Environment"]["Variables"])
    assert resources == StreamResources(
        metrics_table=outputs["MetricsTable"],
        inventory_table=outputs["InventoryTable"],
        facts_table=outputs["FactsTable"],
        settings_table=outputs["SettingsTable"],
        lake_bucket=outputs["LakeBucket"],
        alert_topic_arn=outputs["AlertTopicArn"],
        # dev.json: the demo's history starts at last week's local midnight (up to 8 days + a
        # daylight-saving hour back), so its window is wider than the default 7 days.
        window=PlausibilityWindow(past=timedelta(days=9)),
    )

    mapping = lam.get_event_source_mapping(UUID=outputs["EventSourceMappingId"])
    # dev.json: EnhancedFanOut "true", the mapping reads through the stream's consumer.
    consumers = aws_client("kinesis").list_stream_consumers(StreamARN=outputs["StreamArn"])
    assert [c["ConsumerARN"] for c in consumers["Consumers"]] == [mapping["EventSourceArn"]]
    assert mapping["EventSourceArn"].startswith(
        f"{outputs['StreamArn']}/consumer/storepulse-dev-stream-processor"
    )
    assert mapping["FunctionArn"] == outputs["FunctionArn"]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == outputs["DeadLetterQueueArn"]
    # Stored as declared (moto never applies them: see FACTS.md).
    assert {k: mapping[k] for k in SETTINGS_OF_MAPPING} == SETTINGS_OF_MAPPING


def test_the_alert_topic_is_encrypted_with_the_stack_key_and_still_publishes(
    aws_client: Client, outputs: dict[str, str]
) -> None:
    """moto creates AWS::KMS::Key (rotation on); SNS stores the key and never calls KMS, so
    local publishes go through as on AWS with the role's kms grants."""
    sns, kms, sqs = aws_client("sns"), aws_client("kms"), aws_client("sqs")
    attributes = sns.get_topic_attributes(TopicArn=outputs["AlertTopicArn"])["Attributes"]
    key = kms.describe_key(KeyId=attributes["KmsMasterKeyId"])["KeyMetadata"]
    assert (key["KeyState"], key["KeyManager"]) == ("Enabled", "CUSTOMER")
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True

    inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=outputs["AlertTopicArn"],
        Protocol="sqs",
        Endpoint=inbox_arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    sns.publish(TopicArn=outputs["AlertTopicArn"], Message="encrypted at rest")
    received = sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in received] == ["encrypted at rest"]


def test_the_lake_bucket_policy_is_a_known_gap(aws_client: Client, outputs: dict[str, str]) -> None:
    """moto skips AWS::S3::BucketPolicy (infra/local/embedded_aws_gaps.json): the QuickSight
    grant is checked in the template only. If moto starts creating it, the TLS-only statement
    (prod) would 403 every local object call: dev keeps it off."""
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        aws_client("s3").get_bucket_policy(Bucket=outputs["LakeBucket"])
