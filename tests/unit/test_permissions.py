"""storepulse.deploy.permissions: AWS calls to IAM actions and ARNs, and the small evaluator."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from storepulse.config import REPO_ROOT
from storepulse.deploy.permissions import (
    Access,
    Account,
    CallRecorder,
    Policy,
    Statement,
    UnsupportedPolicyError,
    accesses,
    template_intrinsics,
    template_policy,
)

ACCOUNT = Account("111122223333")
TABLE = "arn:aws:dynamodb:eu-west-1:111122223333:table/"


def test_batch_calls_need_the_action_on_every_table() -> None:
    params = {"RequestItems": {"facts": [], "metrics": []}}
    assert accesses("dynamodb", "BatchWriteItem", params, "eu-west-1", ACCOUNT) == [
        Access("dynamodb:BatchWriteItem", TABLE + "facts"),
        Access("dynamodb:BatchWriteItem", TABLE + "metrics"),
    ]


def test_an_index_query_needs_the_index_arn() -> None:
    params = {"TableName": "facts", "IndexName": "gsi1"}
    (access,) = accesses("dynamodb", "Query", params, "eu-west-1", ACCOUNT)
    assert access == Access("dynamodb:Query", TABLE + "facts/index/gsi1")


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        (
            "s3",
            "PutObject",
            {"Bucket": "b", "Key": "raw/x"},
            Access("s3:PutObject", "arn:aws:s3:::b/raw/x"),
        ),
        ("s3", "ListObjectsV2", {"Bucket": "b"}, Access("s3:ListBucket", "arn:aws:s3:::b")),
        (
            "s3",
            "HeadObject",
            {"Bucket": "b", "Key": "k"},
            Access("s3:GetObject", "arn:aws:s3:::b/k"),
        ),
        (
            "sqs",
            "SendMessage",
            {"QueueUrl": "https://sqs.eu-west-1.amazonaws.com/111122223333/q"},
            Access("sqs:SendMessage", "arn:aws:sqs:eu-west-1:111122223333:q"),
        ),
        (
            "kinesis",
            "PutRecords",
            {"StreamName": "s"},
            Access("kinesis:PutRecords", "arn:aws:kinesis:eu-west-1:111122223333:stream/s"),
        ),
        ("sns", "Publish", {"TopicArn": "arn:t"}, Access("sns:Publish", "arn:t")),
        (
            "cloudformation",
            "DescribeStacks",
            {"StackName": "storepulse-dev-realtime"},
            Access(
                "cloudformation:DescribeStacks",
                "arn:aws:cloudformation:eu-west-1:111122223333:stack/storepulse-dev-realtime/*",
            ),
        ),
        ("sts", "GetCallerIdentity", {}, Access("sts:GetCallerIdentity", "*")),
    ],
)
def test_calls_map_to_their_action_and_resource(
    service: str, operation: str, params: dict, expected: Access
) -> None:
    assert accesses(service, operation, params, "eu-west-1", ACCOUNT) == [expected]


def test_wildcards_and_an_explicit_deny() -> None:
    policy = Policy.from_documents(
        [
            {
                "Statement": [
                    {"Effect": "Allow", "Action": "s3:Put*", "Resource": "arn:aws:s3:::b/raw/*"},
                    {
                        "Effect": "Deny",
                        "Action": "s3:PutObject",
                        "Resource": "arn:aws:s3:::b/raw/x?",
                    },
                ]
            }
        ]
    )
    assert policy.allows(Access("S3:PUTOBJECT", "arn:aws:s3:::b/raw/dt=1/a.gz"))
    assert not policy.allows(Access("s3:PutObject", "arn:aws:s3:::b/raw/x1"))
    assert not policy.allows(Access("s3:PutObject", "arn:aws:s3:::b/curated/a"))
    assert not policy.allows(Access("s3:PutObject", "arn:aws:s3:::B/raw/a"))  # ARNs keep case
    assert not policy.allows(Access("s3:GetObject", "arn:aws:s3:::b/raw/a"))


def test_unused_grants_are_listed() -> None:
    statement = Statement("Allow", ("dynamodb:GetItem", "dynamodb:Query"), ("t1", "t2"), "S")
    used = [Access("dynamodb:GetItem", "t1"), Access("dynamodb:Query", "t2")]
    assert Policy((statement,)).unused(used) == [
        ("S", Access("dynamodb:GetItem", "t2")),
        ("S", Access("dynamodb:Query", "t1")),
    ]


def test_a_condition_is_refused_rather_than_ignored() -> None:
    statement = {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {}}
    with pytest.raises(UnsupportedPolicyError):
        Policy.from_documents([{"Statement": [statement]}])


def test_a_template_role_resolves_with_the_stacks_names() -> None:
    template = {
        "Resources": {
            "T": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {"TableName": {"Fn::Sub": "x-${Env}"}},
            },
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "q"}},
            "R": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [
                        {
                            "PolicyDocument": {
                                "Statement": [
                                    {
                                        "Effect": "Allow",
                                        "Action": "dynamodb:GetItem",
                                        "Resource": [
                                            {"Fn::GetAtt": ["T", "Arn"]},
                                            {"Fn::GetAtt": ["Q", "Arn"]},
                                        ],
                                    }
                                ]
                            }
                        }
                    ]
                },
            },
        }
    }
    pseudo = {"AWS::Region": "eu-west-1", "AWS::AccountId": "111122223333", "AWS::Partition": "aws"}
    intrinsics = template_intrinsics(template, {"Env": "prod"}, pseudo)
    (statement,) = template_policy(template, "R", intrinsics).statements
    assert statement.resources == (TABLE + "x-prod", "arn:aws:sqs:eu-west-1:111122223333:q")


def test_the_recorder_sees_the_calls_of_clients_made_after_it_is_attached() -> None:
    session = boto3.Session(
        region_name="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    recorder = CallRecorder(ACCOUNT).attach(session)
    client = session.client("dynamodb")
    with Stubber(client) as stub:
        stub.add_response("get_item", {}, {"TableName": "facts", "Key": {"pk": {"S": "p"}}})
        client.get_item(TableName="facts", Key={"pk": {"S": "p"}})
    assert recorder.accesses() == [Access("dynamodb:GetItem", TABLE + "facts")]
    assert recorder.operations() == {"dynamodb": {"GetItem"}}


def test_the_deployer_may_create_the_enhanced_fan_out_consumer() -> None:
    """The embedded AWS's CloudFormation creates resources without authorization (a recorded
    gap), so the deployment policy's grants for the optional StreamConsumer are checked here."""
    document = json.loads((REPO_ROOT / "infra" / "iam" / "deployment-policy.json").read_text())
    kinesis = [s for s in document["Statement"] if s.get("Sid") == "EventStream"]
    policy = Policy.from_documents([{"Statement": kinesis}])
    stream = "arn:aws:kinesis:eu-west-1:123456789012:stream/storepulse-dev-events"
    consumer = f"{stream}/consumer/storepulse-dev-stream-processor:1765000000"
    for action in ("RegisterStreamConsumer", "DescribeStreamConsumer", "ListStreamConsumers"):
        assert policy.allows(Access(f"kinesis:{action}", stream)), action
    assert policy.allows(Access("kinesis:DeregisterStreamConsumer", consumer))
    assert policy.allows(Access("kinesis:DescribeStreamConsumer", consumer))
