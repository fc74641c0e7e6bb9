"""The project's own operators, for what the Amazon provider has no operator for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

if TYPE_CHECKING:
    from airflow.sdk import Context


class CloudFormationChangeSetOperator(AwsBaseOperator[CloudFormationHook]):
    """Create or update a CloudFormation stack through a change set, and wait for it.

    The provider creates and deletes stacks, but has no update: its create sensor even fails on
    ``UPDATE_*`` states. This operator creates the stack when it is missing and updates it
    otherwise, always through one change set whose changes it logs; when the stack already has
    this template and these parameters it does nothing (see ``storepulse.deploy.stack``). On AWS
    a failed update rolls back, so the previous version keeps serving while the task fails with
    the failing resources and CloudFormation's reasons.

    Returns the stack's outputs ({OutputKey: OutputValue}), the task's XCom; the deploy itself
    (action, change set, changes, status) is pushed under the key ``deploy``.

    :param stack_name: stack name (templated)
    :param template_body: the template's text (templated: pass the output of the task that
        linted it, so that what was checked is what is deployed)
    :param parameters: ``[{"ParameterKey": ..., "ParameterValue": ...}]`` or ``{key: value}``
        (templated)
    :param capabilities: acknowledged capabilities, e.g. ``CAPABILITY_IAM``
    :param waiter_delay: seconds between status checks, as in the provider's operators (the
        first check is immediate)
    :param waiter_max_attempts: status checks at most, per wait (the change set, then its
        execution): with the defaults, 30 minutes each

    Not deferrable: the execution's end is a stack event newer than the one before it (right
    after ``ExecuteChangeSet`` the stack may still show its previous, complete state), which no
    botocore waiter, hence no ``AwsBaseWaiterTrigger``, can express.
    """

    aws_hook_class = CloudFormationHook
    template_fields: Sequence[str] = aws_template_fields(
        "stack_name", "template_body", "parameters"
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "template_body": "yaml",
        "parameters": "json",
    }
    ui_color = "#6b9659"

    def __init__(
        self,
        *,
        stack_name: str,
        template_body: str,
        parameters: Sequence[Mapping[str, str]] | Mapping[str, str],
        capabilities: Sequence[str] = ("CAPABILITY_IAM",),
        waiter_delay: int = 10,
        waiter_max_attempts: int = 180,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stack_name = stack_name
        self.template_body = template_body
        self.parameters = parameters
        self.capabilities = list(capabilities)
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def execute(self, context: Context) -> dict[str, str]:
        from storepulse.deploy.stack import deploy_stack

        result = deploy_stack(
            self.hook.get_conn(),
            stack_name=self.stack_name,
            template_body=self.template_body,
            parameters=_parameter_list(self.parameters),
            capabilities=self.capabilities,
            waiter_delay=float(self.waiter_delay),
            waiter_max_attempts=self.waiter_max_attempts,
        )
        context["ti"].xcom_push(key="deploy", value=result.summary())
        self.log.info(
            "%s: action %s, %d resource changes, status %s, %d outputs",
            self.stack_name,
            result.action,
            len(result.changes),
            result.status,
            len(result.outputs),
        )
        return result.outputs


def _parameter_list(
    parameters: Sequence[Mapping[str, str]] | Mapping[str, str],
) -> list[dict[str, str]]:
    if isinstance(parameters, Mapping):
        return [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()]
    return [dict(p) for p in parameters]
