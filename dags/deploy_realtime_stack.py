"""
### Deploy the real-time path

Builds and deploys the Kinesis -> Lambda -> DynamoDB/S3/SNS stack
(`infra/cloudformation/realtime.yaml`, stack `storepulse-<env>-realtime`), then proves it works.

1. **lint_template**: cfn-lint; any error stops the run before anything is created.
2. **package_function**: a deterministic zip of `lambdas/stream_processor`, exactly the
   `storepulse` modules it imports and the pinned dependencies the Lambda runtime lacks;
   **package_change_capture** the same for `lambdas/change_capture` (with pyarrow, built for
   its own runtime, python3.12).
3. **upload_package** / **upload_change_capture**: to
   `s3://storepulse-<env>-artifacts-<account>/lambda/<function>/<sha256>.zip` (bucket created if
   missing). The key is the zip's hash: unchanged code, unchanged key.
4. **stack_parameters**: `infra/cloudformation/parameters/<env>.json` plus the code locations. An
   environment without its own file, or with a `REPLACE-ME` value left in it, fails here.
5. **deploy_stack**: one change set, created, logged and executed (create or update); nothing at
   all when the stack already has this template and these parameters. On AWS a failed update
   rolls back and the previous version keeps serving; the task fails naming the resources.
6. **verify_stack**: every resource looked up through its own service. A resource the stack
   lists without a physical id (never on AWS; the embedded AWS's skipped types) is a known gap
   if its type is in `infra/local/embedded_aws_gaps.json`, a failure otherwise. Its success
   emits the Asset `cloudformation://storepulse/realtime`, which starts `deploy_quicksight`.
7. **migrate_inventory**: stock levels kept one item per SKU (releases before 2026-12) moved
   into each store's level items (`storepulse.stock_levels.migrate`; idempotent, a no-op
   once done). Until it runs, the new stream reads an old item when it first writes its SKU.
8. **smoke_test**: a marked event goes through the stream; the run waits for the processor's
   answer in the facts table, given only after it archived, claimed, counted, stocked, queried
   and alerted on smoke-only keys (so on AWS a permission the role lacks fails here), and logs
   the latency. Locally the project's Lambda runtime must be
   running (`make up` starts it). Params: `smoke_test` (false skips it), `smoke_timeout_seconds`.

Rerunning is safe: every step is idempotent. Undo with `teardown_realtime_stack`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from storepulse.airflow.conventions import AWS_CONN_ID, DEFAULT_ARGS
from storepulse.airflow.hooks import aws_client
from storepulse.airflow.operators import CloudFormationChangeSetOperator
from storepulse.assets import realtime_stack_asset
from storepulse.config import REPO_ROOT, settings
from storepulse.deploy.current import CAPTURE_DIR, FUNCTION_DIR, TEMPLATE
from storepulse.deploy.stack import stack_name

log = logging.getLogger(__name__)

STACK_NAME = stack_name(settings().env)


def _build_dir() -> Path:
    return settings().lambda_build_dir


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["realtime", "deploy"],
    doc_md=__doc__,
    params={
        "smoke_test": Param(True, type="boolean", description="Send a smoke event at the end"),
        "smoke_timeout_seconds": Param(
            120, type="integer", minimum=1, description="How long to wait for the smoke event"
        ),
    },
)
def deploy_realtime_stack() -> None:
    @task(show_return_value_in_logs=False)  # the template's text: logged by its file name
    def lint_template() -> str:
        """cfn-lint the template; return its text, so the deploy uses exactly what was checked."""
        from storepulse.deploy.lint import check_template

        findings = check_template(TEMPLATE, regions=[settings().region])
        for finding in findings:
            log.warning("cfn-lint: %s", finding)
        log.info("cfn-lint: 0 errors, %d other findings in %s", len(findings), TEMPLATE.name)
        return TEMPLATE.read_text()

    @task
    def package_function(function_dir: str = FUNCTION_DIR.name) -> dict[str, Any]:
        from storepulse.deploy.current import function_package

        package = function_package(function_dir, _build_dir(), TEMPLATE.read_text())
        log.info("zip: %d bytes, sha256 %s, %d files", package.size, package.sha256, package.files)
        log.info("%d storepulse modules: %s", len(package.modules), ", ".join(package.modules))
        log.info("%d vendored: %s", len(package.dependencies), ", ".join(package.dependencies))
        return package.to_dict()

    @task
    def upload_package(
        built: dict[str, Any], function_dir: str = FUNCTION_DIR.name
    ) -> dict[str, Any]:
        """Upload the zip unless its key exists (same key, same bytes)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from storepulse.deploy.package import (
            artifacts_bucket,
            function_name,
            local_package,
            upload_package,
        )

        hook = S3Hook(aws_conn_id=AWS_CONN_ID)
        bucket = artifacts_bucket(settings().env, hook.account_id)
        if not hook.check_for_bucket(bucket):
            hook.create_bucket(bucket_name=bucket)
            log.info("created the artifacts bucket %s", bucket)
        source = REPO_ROOT / "lambdas" / function_dir
        package = local_package(built, source, _build_dir())
        key, uploaded = upload_package(
            hook.get_conn(), package, bucket, function=function_name(source)
        )
        done = "uploaded" if uploaded else "already there, not uploaded again"
        log.info("s3://%s/%s: %s (%d bytes)", bucket, key, done, package.size)
        return {"bucket": bucket, "key": key, "uploaded": uploaded, "sha256": package.sha256}

    @task
    def stack_parameters(
        artifact: dict[str, Any], capture: dict[str, Any] | None = None
    ) -> list[dict[str, str]]:
        from storepulse.deploy.stack import load_parameters

        env = settings().env
        parameters = load_parameters(
            env,
            code_bucket=artifact["bucket"],
            code_key=artifact["key"],
            capture_code_key=capture and capture["key"],
        )
        shown = ", ".join(f"{p['ParameterKey']}={p['ParameterValue']}" for p in parameters)
        log.info("%d parameters: %s", len(parameters), shown)
        return parameters

    @task(outlets=[realtime_stack_asset()])
    def verify_stack(
        outputs: dict[str, str], artifact: dict[str, Any], capture: dict[str, Any] | None = None
    ) -> dict[str, int]:
        """Every resource through its own service; each function must run its uploaded zip."""
        from storepulse.deploy.verify import verify_stack

        report = verify_stack(
            aws_client,
            STACK_NAME,
            code_sha256=artifact["sha256"],
            code_sha256_of={"ChangeCaptureFunction": capture["sha256"]} if capture else None,
        )
        log.info("%d stack outputs; verification %s", len(outputs), report.summary())
        return report.summary()

    @task
    def migrate_inventory(outputs: dict[str, str]) -> int:
        """Stock levels kept one item per SKU (releases before 2026-12) into the store's level
        items; nothing to do on a new or already migrated stack."""
        from storepulse.airflow.hooks import aws_resource
        from storepulse.settings import load_catalog
        from storepulse.stock_levels import migrate

        dynamodb = aws_resource("dynamodb")
        catalog = load_catalog(dynamodb.Table(outputs["SettingsTable"]))
        moved = migrate(dynamodb, outputs["InventoryTable"], catalog.products)
        log.info("%d stock level item(s) of before 2026-12 moved into level items", moved)
        return moved

    @task
    def smoke_test(outputs: dict[str, str], params: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from storepulse.deploy.smoke import run_smoke_test

        params = params or {}
        if not params.get("smoke_test", True):
            raise AirflowSkipException("smoke_test is false: no smoke event sent")
        result = run_smoke_test(
            aws_client("kinesis"),
            aws_client("dynamodb"),
            stream_name=outputs["StreamName"],
            facts_table=outputs["FactsTable"],
            timeout=float(params.get("smoke_timeout_seconds", 120)),
        )
        log.info("smoke event %s answered in %.2f s", result.event_id, result.latency_seconds)
        return {"event_id": result.event_id, "latency_seconds": result.latency_seconds}

    template = lint_template()
    built = package_function()
    built_capture = package_function.override(task_id="package_change_capture")(CAPTURE_DIR.name)
    template >> [built, built_capture]
    artifact = upload_package(built)
    capture = upload_package.override(task_id="upload_change_capture")(
        built_capture, CAPTURE_DIR.name
    )
    deploy_stack = CloudFormationChangeSetOperator(
        task_id="deploy_stack",
        aws_conn_id=AWS_CONN_ID,
        stack_name=STACK_NAME,
        template_body=template,
        parameters=stack_parameters(artifact, capture),
        capabilities=["CAPABILITY_IAM"],
    )
    verified = verify_stack(deploy_stack.output, artifact, capture)
    [verified, migrate_inventory(deploy_stack.output)] >> smoke_test(deploy_stack.output)


deploy_realtime_stack()
