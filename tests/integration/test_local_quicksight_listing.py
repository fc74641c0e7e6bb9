"""The embedded AWS's QuickSight answers List* calls in pages, as AWS does: boto3's paginator
follows ``NextToken`` to the last page."""

from __future__ import annotations

from typing import Any

from storepulse_local.iam import ACCOUNT_ID

WHERE = {"AwsAccountId": ACCOUNT_ID, "Namespace": "default"}


def test_list_users_and_groups_come_in_pages_that_add_up(aws_client: Any) -> None:
    client = aws_client("quicksight")
    for name in ("ann", "bob", "cid"):
        client.register_user(
            **WHERE,
            UserName=name,
            IdentityType="QUICKSIGHT",
            Email=f"{name}@example.com",
            UserRole="READER",
        )
        client.create_group(**WHERE, GroupName=f"g-{name}")

    def listed(operation: str, key: str, name: str) -> list[list[str]]:
        pages = client.get_paginator(operation).paginate(**WHERE, PaginationConfig={"PageSize": 2})
        return [[entry[name] for entry in page[key]] for page in pages]

    assert listed("list_users", "UserList", "UserName") == [["ann", "bob"], ["cid"]]
    assert listed("list_groups", "GroupList", "GroupName") == [["g-ann", "g-bob"], ["g-cid"]]
