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


def test_data_sets_not_yet_in_quicksight_are_named_and_other_errors_raise() -> None:
    from unittest import mock

    from botocore.exceptions import ClientError

    from storepulse.airflow.sensors import undeployed_data_sets

    def error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code}}, "ListIngestions")

    decl = mock.Mock()
    decl.data_set.side_effect = lambda name: mock.Mock(id=f"ds-{name}")
    found = {"ds-orders": [], "ds-refunds": error("ResourceNotFoundException")}

    def listing(_client, _account, data_set_id):
        if isinstance(found[data_set_id], Exception):
            raise found[data_set_id]
        return found[data_set_id]

    with mock.patch("storepulse.quicksight.list_ingestions", side_effect=listing):
        assert undeployed_data_sets(None, decl, ["orders", "refunds"], "1") == ["refunds"]
        found["ds-refunds"] = error("AccessDeniedException")
        with pytest.raises(ClientError):
            undeployed_data_sets(None, decl, ["refunds"], "1")
