"""The stack sensor's reading of CloudFormation's states: wait, go on, or stop with the reason."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from storepulse.airflow.sensors import stack_serving


@pytest.mark.parametrize(
    "status", ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"]
)
def test_a_serving_stack_lets_the_run_go_on(status: str) -> None:
    assert stack_serving("s", status)


@pytest.mark.parametrize(
    "status", [None, "REVIEW_IN_PROGRESS", "CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS"]
)
def test_a_missing_or_changing_stack_is_waited_for(status: str | None) -> None:
    assert not stack_serving("s", status)


@pytest.mark.parametrize("status", ["ROLLBACK_COMPLETE", "CREATE_FAILED", "DELETE_FAILED"])
def test_a_stack_only_an_operator_can_repair_fails_with_what_to_do(status: str) -> None:
    with pytest.raises(AirflowFailException, match=f"{status}.*deploy_realtime_stack"):
        stack_serving("storepulse-dev-realtime", status)
