"""The embedded AWS answers like AWS for what the platform uses, and fails fast where it cannot."""

from __future__ import annotations

import io
import json
import threading
import zipfile

import botocore.exceptions
import pytest

from storepulse_local.embedded_aws import EmbeddedAws, EmbeddedAwsError, is_healthy


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", source)
    return buffer.getvalue()


def test_is_healthy_with_lambda_docker_mode_off(embedded_aws: str) -> None:
    assert is_healthy(embedded_aws)


def test_lambda_invoke_does_not_need_docker(aws_client) -> None:
    iam, lam = aws_client("iam"), aws_client("lambda")
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps({}))["Role"]["Arn"]
    lam.create_function(
        FunctionName="echo",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handle",
        Code={"ZipFile": _zip("def handle(e, c): 1")},
    )

    response = lam.invoke(FunctionName="echo", Payload=b'{"ping": 1}')

    assert (
        "FunctionError" not in response
    )  # with Docker mode on, moto answers "error running docker"


def test_resources_are_reset_between_tests(aws_client) -> None:
    s3 = aws_client("s3")
    assert s3.list_buckets()["Buckets"] == []
    s3.create_bucket(Bucket="only-in-this-test")


def test_unimplemented_calls_fail_fast(aws_client) -> None:
    quicksight = aws_client("quicksight")
    attempts: list[str] = []
    quicksight.meta.events.register("before-send", lambda **kwargs: attempts.append("sent"))

    with pytest.raises(botocore.exceptions.ClientError, match="500"):
        quicksight.delete_dashboard(AwsAccountId="123456789012", DashboardId="x")

    assert len(attempts) == 1  # moto answers HTTP 500 (not implemented); no retry with backoff


def test_port_in_use_is_a_clear_error(embedded_aws: str) -> None:
    port = int(embedded_aws.rsplit(":", 1)[1])
    with pytest.raises(EmbeddedAwsError, match=f"{port}: port in use"):
        EmbeddedAws(port=port)


def test_put_records_leaves_mapped_functions_to_the_local_runtime(aws_client) -> None:
    iam, lam, kinesis = aws_client("iam"), aws_client("lambda"), aws_client("kinesis")
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps({}))["Role"]["Arn"]
    lam.create_function(
        FunctionName="consumer",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handle",
        Code={"ZipFile": _zip("def handle(e, c): 1")},
    )
    kinesis.create_stream(StreamName="s", ShardCount=1)
    arn = kinesis.describe_stream(StreamName="s")["StreamDescription"]["StreamARN"]
    lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="consumer", StartingPosition="TRIM_HORIZON"
    )
    kinesis.put_records(StreamName="s", Records=[{"Data": b"{}", "PartitionKey": "k"}] * 3)

    shard = kinesis.list_shards(StreamName="s")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName="s", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert len(kinesis.get_records(ShardIterator=iterator)["Records"]) == 3
    from moto.awslambda.models import LambdaBackend

    assert LambdaBackend.send_kinesis_message.__name__ == "_delivered_by_the_local_runtime"


def test_a_wait_for_records_answers_when_a_put_lands_after_the_iterator(
    aws_client, embedded_aws: str
) -> None:
    """Enhanced fan-out's push, emulated: the runtime's long poll returns on a put on its shard
    (not on another shard's), and only says that records exist (GetRecords reads them)."""
    from storepulse_local.lambda_runtime.push import RecordPush

    kinesis = aws_client("kinesis")
    kinesis.create_stream(StreamName="s", ShardCount=2)
    arn = kinesis.describe_stream(StreamName="s")["StreamDescription"]["StreamARN"]
    first = kinesis.list_shards(StreamName="s")["Shards"][0]["ShardId"]  # hash keys from 0
    iterator = kinesis.get_shard_iterator(
        StreamName="s", ShardId=first, ShardIteratorType="LATEST"
    )["ShardIterator"]
    push = RecordPush(embedded_aws, f"{arn}/consumer/c:1")
    answers: list[bool] = []
    waiting = threading.Thread(target=lambda: answers.append(push.wait(iterator, 30.0)))
    waiting.start()

    kinesis.put_record(
        StreamName="s", Data=b"elsewhere", PartitionKey="k", ExplicitHashKey=str(2**127 + 1)
    )
    assert push.wait(iterator, 0.0) is False  # the other shard's put is not this one's
    kinesis.put_record(StreamName="s", Data=b"here", PartitionKey="k", ExplicitHashKey="0")
    waiting.join(timeout=30)
    assert answers == [True]
    assert push.wait(iterator, 0.0) is True  # at once, while the records are not read
    records = kinesis.get_records(ShardIterator=iterator)
    assert [r["Data"] for r in records["Records"]] == [b"here"]
    assert push.wait(records["NextShardIterator"], 0.0) is False


def test_a_wait_on_a_table_stream_answers_when_that_table_is_written(
    aws_client, embedded_aws: str
) -> None:
    """A caught-up DynamoDB stream reader's long poll returns on a write to its table (not on
    another table's), and only says that records exist (GetRecords reads them)."""
    from storepulse_local.lambda_runtime.push import RecordPush

    dynamodb, streams = aws_client("dynamodb"), aws_client("dynamodbstreams")
    arns = {}
    for name in ("watched", "other"):
        arns[name] = dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
        )["TableDescription"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arns["watched"])["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=arns["watched"], ShardId=shard["ShardId"], ShardIteratorType="LATEST"
    )["ShardIterator"]
    push = RecordPush(embedded_aws, arns["watched"], paced=True)
    answers: list[bool | None] = []
    waiting = threading.Thread(target=lambda: answers.append(push.wait(iterator, 30.0)))
    waiting.start()

    dynamodb.put_item(TableName="other", Item={"pk": {"S": "elsewhere"}})
    assert push.wait(iterator, 0.0) is False  # the other table's write is not this one's
    dynamodb.put_item(TableName="watched", Item={"pk": {"S": "here"}})
    waiting.join(timeout=30)
    assert answers == [True]
    records = streams.get_records(ShardIterator=iterator)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in records["Records"]] == ["here"]
    assert push.wait(records["NextShardIterator"], 0.0) is False


def _small_template(pitr: bool, extra_output: bool = False) -> str:
    """A table and a queue, with outputs (a Ref, a GetAtt .Arn, an export)."""
    outputs: dict = {
        "TableName": {"Value": {"Ref": "Table"}, "Export": {"Name": "small-TableName"}},
        "QueueArn": {"Value": {"Fn::GetAtt": ["Queue", "Arn"]}},
    }
    if extra_output:
        outputs["QueueUrl"] = {"Value": {"Ref": "Queue"}}
    return json.dumps(
        {
            "Resources": {
                "Table": {
                    "Type": "AWS::DynamoDB::Table",
                    "Properties": {
                        "TableName": "small",
                        "BillingMode": "PAY_PER_REQUEST",
                        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": pitr},
                    },
                },
                "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "small-q"}},
            },
            "Outputs": outputs,
        }
    )


def _execute(cfn, kind: str, template: str) -> dict:
    cfn.create_change_set(
        StackName="small",
        ChangeSetName=f"cs-{kind.lower()}",
        ChangeSetType=kind,
        TemplateBody=template,
    )
    cfn.execute_change_set(StackName="small", ChangeSetName=f"cs-{kind.lower()}")
    return cfn.describe_stacks(StackName="small")["Stacks"][0]


def _recovery(aws_client) -> str:
    backups = aws_client("dynamodb").describe_continuous_backups(TableName="small")
    return backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"][
        "PointInTimeRecoveryStatus"
    ]


def test_change_sets_compute_the_stacks_outputs_and_exports(aws_client) -> None:
    """moto alone lists no outputs after a CREATE change set (embedded_aws_gaps.json)."""
    cfn = aws_client("cloudformation")
    created = _execute(cfn, "CREATE", _small_template(pitr=True))
    outputs = {o["OutputKey"]: o["OutputValue"] for o in created["Outputs"]}
    assert outputs == {
        "TableName": "small",
        "QueueArn": "arn:aws:sqs:us-east-1:123456789012:small-q",
    }
    exports = {e["Name"]: e["Value"] for e in cfn.list_exports()["Exports"]}
    assert exports == {"small-TableName": "small"}

    updated = _execute(cfn, "UPDATE", _small_template(pitr=True, extra_output=True))

    assert {o["OutputKey"] for o in updated["Outputs"]} == {"TableName", "QueueArn", "QueueUrl"}
    assert [e["Name"] for e in cfn.list_exports()["Exports"]] == ["small-TableName"]


def test_a_stack_table_has_the_templates_point_in_time_recovery(aws_client) -> None:
    cfn = aws_client("cloudformation")
    _execute(cfn, "CREATE", _small_template(pitr=True))
    assert _recovery(aws_client) == "ENABLED"

    _execute(cfn, "UPDATE", _small_template(pitr=False))

    assert _recovery(aws_client) == "DISABLED"
    assert aws_client("dynamodb").describe_table(TableName="small")["Table"]["TableName"]


def _fan_out_template() -> str:
    """A mapping reading a stream directly or through a consumer, as the FanOut parameter says
    (the real-time stack's EnhancedFanOut, in small)."""
    stream_arn = {"Fn::GetAtt": ["Stream", "Arn"]}
    return json.dumps(
        {
            "Parameters": {"FanOut": {"Type": "String", "AllowedValues": ["true", "false"]}},
            "Conditions": {"UseFanOut": {"Fn::Equals": [{"Ref": "FanOut"}, "true"]}},
            "Resources": {
                "Stream": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}},
                "Consumer": {
                    "Type": "AWS::Kinesis::StreamConsumer",
                    "Condition": "UseFanOut",
                    "Properties": {"ConsumerName": "reader", "StreamARN": stream_arn},
                },
                "Role": {
                    "Type": "AWS::IAM::Role",
                    "Properties": {"AssumeRolePolicyDocument": {"Statement": []}},
                },
                "Function": {
                    "Type": "AWS::Lambda::Function",
                    "Properties": {
                        "Runtime": "python3.11",
                        "Handler": "index.handler",
                        "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                        "Code": {"ZipFile": "def handler(event, context): pass"},
                    },
                },
                "Mapping": {
                    "Type": "AWS::Lambda::EventSourceMapping",
                    "Properties": {
                        "EventSourceArn": {
                            "Fn::If": [
                                "UseFanOut",
                                {"Fn::GetAtt": ["Consumer", "ConsumerARN"]},
                                stream_arn,
                            ]
                        },
                        "FunctionName": {"Ref": "Function"},
                        "StartingPosition": "TRIM_HORIZON",
                    },
                },
            },
        }
    )


def test_an_update_that_flips_a_condition_creates_replaces_and_deletes_as_aws(aws_client) -> None:
    """moto's update diffs the resources' JSON, which a changed parameter leaves alike: the
    embedded AWS creates what the condition now declares, replaces the mapping whose source the
    condition chooses, deletes what it no longer declares, and takes the change set back."""
    cfn, kinesis, lam = aws_client("cloudformation"), aws_client("kinesis"), aws_client("lambda")

    def deploy(kind: str, fan_out: str) -> tuple[str, list[str]]:
        name = f"cs-{kind.lower()}-{fan_out}"
        cfn.create_change_set(
            StackName="fan-out",
            ChangeSetName=name,
            ChangeSetType=kind,
            TemplateBody=_fan_out_template(),
            Parameters=[{"ParameterKey": "FanOut", "ParameterValue": fan_out}],
        )
        cfn.execute_change_set(StackName="fan-out", ChangeSetName=name)
        [mapping] = lam.list_event_source_mappings()["EventSourceMappings"]
        stream = kinesis.list_streams()["StreamSummaries"][0]["StreamARN"]
        consumers = kinesis.list_stream_consumers(StreamARN=stream)["Consumers"]
        return mapping["EventSourceArn"], [c["ConsumerARN"] for c in consumers]

    source, consumers = deploy("CREATE", "false")
    assert consumers == [] and "/consumer/" not in source
    source, consumers = deploy("UPDATE", "true")
    assert consumers == [source]  # the only mapping reads through the new consumer
    source, consumers = deploy("UPDATE", "false")
    assert consumers == [] and "/consumer/" not in source


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.+:UserWarning")
def test_skipped_resources_are_listed_by_name_without_a_physical_id(aws_client) -> None:
    """moto lists what it skipped, and what a false condition left out, as nameless entries."""
    template = {
        "Conditions": {"Never": {"Fn::Equals": ["a", "b"]}},
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "listed-q"}},
            "Alarm": {  # a type moto's CloudFormation skips (embedded_aws_gaps.json)
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "MetricName": "Errors",
                    "Namespace": "AWS/Lambda",
                    "Statistic": "Sum",
                    "Period": 60,
                    "EvaluationPeriods": 1,
                    "Threshold": 1,
                    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                },
            },
            "NotMade": {"Type": "AWS::SQS::Queue", "Condition": "Never"},
        },
    }
    cfn = aws_client("cloudformation")
    cfn.create_stack(StackName="listed", TemplateBody=json.dumps(template))

    summaries = cfn.list_stack_resources(StackName="listed")["StackResourceSummaries"]

    listed = {
        s["LogicalResourceId"]: (s["ResourceType"], s["PhysicalResourceId"]) for s in summaries
    }
    assert listed.keys() == {"Queue", "Alarm"}
    assert listed["Alarm"] == ("AWS::CloudWatch::Alarm", "")
    assert listed["Queue"][1].endswith("/listed-q")
