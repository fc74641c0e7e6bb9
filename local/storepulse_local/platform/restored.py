"""What ``make up`` finds when the embedded AWS restored its state from an earlier run."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from storepulse.layout import Table, table_name
from storepulse.stream.smoke import SMOKE_STORE
from storepulse_local.platform.stack import StackContext

MAX_PAGES = 5  # a table with history shows it on its first page


def embedded_client(ctx: StackContext, service: str) -> Any:
    """A boto3 client on the platform's embedded AWS, with the platform's credentials."""
    return boto3.client(
        service,
        endpoint_url=ctx.settings.embedded_aws_url,
        region_name=ctx.settings.region,
        aws_access_key_id=ctx.env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=ctx.env.get("AWS_SECRET_ACCESS_KEY"),
    )


def history_sent(ctx: StackContext) -> bool:
    """True when the metrics table holds business numbers (not only the deploy's smoke test):
    an earlier run sent the demo's history, which must not be sent again (its event ids differ
    from run to run, so it would be counted twice). Asked once per start (the deploy asks, then
    the simulator, which alone sends it): a Scan of a week's metrics table costs the embedded AWS
    seconds of CPU (moto sorts the whole table for each page), 19 and 34 s of a restart's wall
    time at a load of 5 (2026-12-07)."""
    if "history_sent" not in ctx.restored:
        ctx.restored["history_sent"] = _metrics_beyond_smoke(ctx)
    return bool(ctx.restored["history_sent"])


def _metrics_beyond_smoke(ctx: StackContext) -> bool:
    client = embedded_client(ctx, "dynamodb")
    pages = client.get_paginator("scan").paginate(
        TableName=table_name(Table.METRICS),
        FilterExpression="NOT begins_with(pk, :smoke)",
        ExpressionAttributeValues={":smoke": {"S": f"SMOKE#{SMOKE_STORE}"}},
        Select="COUNT",
        PaginationConfig={"PageSize": 1000},
    )
    try:
        for number, page in enumerate(pages):
            if page["Count"] or number + 1 >= MAX_PAGES:
                return bool(page["Count"])
    except (BotoCoreError, ClientError):
        return False  # no table yet: nothing was sent
    return False


def deploy_not_needed(ctx: StackContext) -> str | None:
    """Why ``make up`` need not wait for a deploy (None: it must deploy): the restored stack
    already has the template, parameters and functions' code a deploy would give it
    (``storepulse.deploy.current``), so the deploy DAG's run would be a no-op."""
    from storepulse.deploy.current import stack_is_current
    from storepulse.deploy.package import PackagingError
    from storepulse.deploy.stack import stack_name

    settings = ctx.settings
    try:
        account = embedded_client(ctx, "sts").get_caller_identity()["Account"]
        verdict = stack_is_current(
            embedded_client(ctx, "cloudformation"),
            stack_name(settings.env),
            env=settings.env,
            account_id=account,
            build_dir=settings.lambda_build_dir,
        )
    except (BotoCoreError, ClientError, PackagingError, OSError) as exc:
        print(f"  cannot tell whether the stack is current ({exc}): deploying", flush=True)
        return None
    if not verdict.current:
        print(f"  {verdict.reason}: deploying", flush=True)
        return None
    return verdict.reason
