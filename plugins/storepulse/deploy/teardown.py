"""What deleting the stack leaves behind: its retained resources (``DeletionPolicy: Retain``),
which of them still exist, and what a bucket holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from botocore.exceptions import ClientError

from storepulse.deploy.stack import Clients, describe_stack, parse_template, physical_ids
from storepulse.deploy.verify import MISSING_CODES


@dataclass(frozen=True)
class RetainedResource:
    """A resource with ``DeletionPolicy: Retain``: deleting the stack leaves it (and its data)."""

    logical_id: str
    resource_type: str
    physical_id: str


def retained_resources(cfn: Any, stack_name: str) -> list[RetainedResource]:
    """The stack's resources that survive its deletion ([] when there is no stack)."""
    if describe_stack(cfn, stack_name) is None:
        return []
    template = parse_template(
        cfn.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
    )
    physical = physical_ids(cfn, stack_name)
    return [
        RetainedResource(lid, resource["Type"], physical[lid])
        for lid, resource in template.get("Resources", {}).items()
        if resource.get("DeletionPolicy") in {"Retain", "RetainExceptOnCreate"} and lid in physical
    ]


def still_existing(
    clients: Clients, resources: Sequence[RetainedResource]
) -> list[RetainedResource]:
    """Those of ``resources`` that exist (a type we cannot look up counts as existing)."""
    return [r for r in resources if _exists(clients, r.resource_type, r.physical_id)]


def bucket_usage(s3: Any, bucket: str) -> tuple[int, int] | None:
    """(objects, bytes) in ``bucket``, or None if it does not exist."""
    if not _exists(lambda _service: s3, "AWS::S3::Bucket", bucket):
        return None
    objects = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            objects += 1
            size += item["Size"]
    return objects, size


_LOOKUPS: Final[dict[str, Callable[[Clients, str], Any]]] = {
    "AWS::DynamoDB::Table": lambda c, pid: c("dynamodb").describe_table(TableName=pid),
    "AWS::S3::Bucket": lambda c, pid: c("s3").head_bucket(Bucket=pid),
    "AWS::SQS::Queue": lambda c, pid: c("sqs").get_queue_attributes(QueueUrl=pid),
    "AWS::Kinesis::Stream": lambda c, pid: c("kinesis").describe_stream_summary(StreamName=pid),
    "AWS::SNS::Topic": lambda c, pid: c("sns").get_topic_attributes(TopicArn=pid),
    "AWS::KMS::Key": lambda c, pid: c("kms").describe_key(KeyId=pid),
}


def _exists(clients: Clients, resource_type: str, physical_id: str) -> bool:
    lookup = _LOOKUPS.get(resource_type)
    if lookup is None:
        return True
    try:
        lookup(clients, physical_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
            return False
        raise
    return True
