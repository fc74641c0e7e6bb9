"""`make up` skips a deploy only when the stack already is what the deploy would make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storepulse.deploy import current
from storepulse.deploy.package import BuiltPackage
from storepulse.deploy.stack import _effective_parameters, load_parameters

ACCOUNT, STACK = "123456789012", "storepulse-dev-realtime"


def _package(sha256: str) -> BuiltPackage:
    return BuiltPackage(Path("x.zip"), sha256, 1, (), (), 1)


class _Stacks:
    """describe_stacks and get_template of one deployed stack (what deploy_stack reads)."""

    def __init__(self, template: str, parameters: dict[str, str], status: str) -> None:
        self.template, self.status = template, status
        self.parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        stack = {"StackName": StackName, "StackStatus": self.status}
        return {"Stacks": [stack | {"Parameters": self.parameters}]}

    def get_template(self, StackName: str, TemplateStage: str) -> dict[str, Any]:  # noqa: N803
        return {"TemplateBody": self.template}


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The functions whose zip was built (none really: each gets the hash of ``code``)."""
    built: list[str] = []

    def build(name: str, _build_dir: Path, _template: str) -> BuiltPackage:
        built.append(name)
        return _package(f"{name[:3]}{'0' * 61}")

    monkeypatch.setattr(current, "function_package", build)
    return built


@pytest.fixture
def code(builds) -> dict[str, str]:
    """Each function's zip hash as the build would give it now (no build here)."""
    return {name: f"{name[:3]}{'0' * 61}" for name in current.CODE_KEY_PARAMETERS}


def _deployed(code: dict[str, str], **changed: str) -> dict[str, str]:
    template = current.TEMPLATE.read_text()
    parameters = load_parameters(
        "dev",
        code_bucket=f"storepulse-dev-artifacts-{ACCOUNT}",
        code_key=f"lambda/stream-processor/{code['stream_processor']}.zip",
        capture_code_key=f"lambda/change-capture/{code['change_capture']}.zip",
    )
    return _effective_parameters(template, parameters) | changed


def _verdict(stacks: _Stacks, build_dir: Path) -> current.Verdict:
    return current.stack_is_current(
        stacks, STACK, env="dev", account_id=ACCOUNT, build_dir=build_dir
    )


def test_the_stack_deployed_from_this_template_parameters_and_code_is_current(
    code, tmp_path
) -> None:
    stacks = _Stacks(current.TEMPLATE.read_text(), _deployed(code), "UPDATE_COMPLETE")
    verdict = _verdict(stacks, tmp_path)
    assert verdict.current, verdict.reason
    assert "stream_processor str000000000" in verdict.reason


EDITED = "\n# edited\n"


@pytest.mark.parametrize(
    ("what", "changed", "edit", "status"),
    [
        ("changed code", {"LambdaCodeKey": "lambda/stream-processor/0.zip"}, "", "CREATE_COMPLETE"),
        ("changed parameter", {"BatchSize": "50"}, "", "CREATE_COMPLETE"),
        ("changed template", {}, EDITED, "CREATE_COMPLETE"),
        ("failed update", {}, "", "UPDATE_ROLLBACK_FAILED"),
    ],
)
def test_anything_else_is_deployed_again(code, what, changed, edit, status, tmp_path) -> None:
    stacks = _Stacks(current.TEMPLATE.read_text() + edit, _deployed(code, **changed), status)
    verdict = _verdict(stacks, tmp_path)
    assert not verdict.current, what
    assert STACK in verdict.reason


def test_a_restart_with_unchanged_sources_reads_the_code_keys_instead_of_building(
    code, builds, tmp_path
) -> None:
    stacks = _Stacks(current.TEMPLATE.read_text(), _deployed(code), "UPDATE_COMPLETE")
    assert _verdict(stacks, tmp_path).current
    assert sorted(builds) == sorted(current.CODE_KEY_PARAMETERS)
    builds.clear()
    assert _verdict(stacks, tmp_path).current
    assert builds == []  # read from the record of these sources


def test_a_changed_source_builds_again(code, builds, tmp_path, monkeypatch) -> None:
    library = tmp_path / "storepulse"
    library.mkdir()
    (library / "handler.py").write_text("RATE = 1\n")
    monkeypatch.setattr(current, "LIBRARY_DIR", library)
    template = current.TEMPLATE.read_text()
    current.deploy_inputs(tmp_path / "build", template)
    (library / "handler.py").write_text("RATE = 2\n")
    builds.clear()
    current.deploy_inputs(tmp_path / "build", template)
    assert sorted(builds) == sorted(current.CODE_KEY_PARAMETERS)
