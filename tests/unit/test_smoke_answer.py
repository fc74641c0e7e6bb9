"""The deploy's smoke test accepts only an answer that lists every step of the path."""

from __future__ import annotations

from typing import Any

import pytest

from storepulse.deploy.smoke import SmokeTestError, run_smoke_test
from storepulse.stream.smoke import STEPS


class Kinesis:
    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        records = [{"SequenceNumber": "1", "ShardId": "shardId-0"} for _ in kwargs["Records"]]
        return {"FailedRecordCount": 0, "Records": records}


class Facts:
    def __init__(self, steps: list[str] | None) -> None:
        self.item: dict[str, Any] = {"type": {"S": "smoke"}}
        if steps is not None:
            self.item["steps"] = {"L": [{"S": step} for step in steps]}

    def get_item(self, **_: Any) -> dict[str, Any]:
        return {"Item": self.item}


def _smoke(steps: list[str] | None) -> None:
    run_smoke_test(Kinesis(), Facts(steps), stream_name="s", facts_table="f", timeout=1)


def test_an_answer_with_every_step_passes() -> None:
    _smoke(list(STEPS))


def test_an_answer_without_the_alert_fails_naming_it() -> None:
    with pytest.raises(SmokeTestError, match=r"answered without alerted \(done: archived,"):
        _smoke([s for s in STEPS if s != "alerted"])


def test_an_older_handlers_answer_fails() -> None:
    with pytest.raises(SmokeTestError, match=r"without archived, claimed.+done: nothing"):
        _smoke(None)
