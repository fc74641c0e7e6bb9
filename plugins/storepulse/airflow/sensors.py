"""The project's own sensors, for what the Amazon provider has no sensor for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook
from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowFailException

from storepulse.airflow.conventions import AWS_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

# What a stack says once its last create or update is done and it serves.
SERVING = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"})


def stack_serving(stack_name: str, status: str | None) -> bool:
    """True when the stack serves, False while it is missing or changing (a deploy will come
    or is under way); raises when only an operator can get it out of ``status``."""
    if status in SERVING:
        return True
    if status is None or status.endswith("_IN_PROGRESS"):
        return False
    raise AirflowFailException(
        f"stack {stack_name} is {status}: it will not serve until it is deployed again "
        "(trigger deploy_realtime_stack)"
    )


class StackReadySensor(AwsBaseSensor[CloudFormationHook]):
    """Waits until the stack exists and serves. The provider's create sensor fails on the
    ``UPDATE_*`` states a redeployed stack is in, and on a stack that does not exist yet: a
    scheduled DAG whose first run comes before the first deploy waits here instead of failing.

    :param stack_name: stack name (templated)
    """

    aws_hook_class = CloudFormationHook
    template_fields: Sequence[str] = aws_template_fields("stack_name")

    def __init__(self, *, stack_name: str, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.stack_name = stack_name

    def poke(self, context: Context) -> bool:
        return stack_serving(self.stack_name, self.hook.get_stack_status(self.stack_name))


# Rescheduled pokes: a waiting run holds no worker slot; a day is long enough for any deploy.
STACK_POKE_SECONDS = 60
STACK_WAIT_SECONDS = 24 * 3600


def wait_for_stack(stack_name: str) -> StackReadySensor:
    """The first task of a scheduled DAG that needs the stack (same id and pace in every DAG)."""
    return StackReadySensor(
        task_id="wait_for_stack",
        stack_name=stack_name,
        aws_conn_id=AWS_CONN_ID,
        mode="reschedule",
        poke_interval=STACK_POKE_SECONDS,
        timeout=STACK_WAIT_SECONDS,
    )


def undeployed_data_sets(client: Any, decl: Any, names: list[str], account_id: str) -> list[str]:
    """The QuickSight data sets among ``names`` that do not exist yet (deploy_quicksight, which
    follows every deploy of the stack, may still be running: a first export can publish first)."""
    from botocore.exceptions import ClientError

    from storepulse.quicksight import list_ingestions

    missing = []
    for name in names:
        try:
            list_ingestions(client, account_id, decl.data_set(name).id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            missing.append(name)
    return missing
