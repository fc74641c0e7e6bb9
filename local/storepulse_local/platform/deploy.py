"""Deploy through Airflow, as an operator would: trigger ``deploy_realtime_stack``, wait for it,
then for the ``deploy_quicksight`` run its Asset starts. The last line printed is a JSON summary.

    python -m storepulse_local.platform.deploy --airflow-url http://127.0.0.1:8080 \\
        --passwords-file .run/airflow/simple_auth_manager_passwords.json.generated
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from storepulse_local.platform.airflow_local import (
    ADMIN_USER,
    AirflowApiError,
    AirflowClient,
)

DEPLOY_DAG = "deploy_realtime_stack"
# Scheduled on the Asset the deploy emits: the wait covers the run that asset starts, so
# QuickSight exists before any export publishes what refresh_quicksight refreshes.
QUICKSIGHT_DAG = "deploy_quicksight"
RUN_TIMEOUT = 900.0


def deploy(client: AirflowClient) -> dict[str, str]:
    """Both runs' ids once both succeeded; raises SystemExit naming the one that did not."""
    client.login()
    for dag_id in (DEPLOY_DAG, QUICKSIGHT_DAG):
        client.wait_for_dag(dag_id)
        client.unpause(dag_id)
    earlier = {run["dag_run_id"] for run in client.dag_runs(QUICKSIGHT_DAG)}
    runs = {DEPLOY_DAG: client.trigger(DEPLOY_DAG)}
    print(f"triggered {DEPLOY_DAG} ({runs[DEPLOY_DAG]}); waiting ...", flush=True)
    _succeeded(client, DEPLOY_DAG, runs[DEPLOY_DAG])
    runs[QUICKSIGHT_DAG] = client.wait_for_new_run(QUICKSIGHT_DAG, earlier)
    print(f"{QUICKSIGHT_DAG} ({runs[QUICKSIGHT_DAG]}) followed; waiting ...", flush=True)
    _succeeded(client, QUICKSIGHT_DAG, runs[QUICKSIGHT_DAG])
    return runs


def _succeeded(client: AirflowClient, dag_id: str, run_id: str) -> None:
    state = client.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    if state != "success":
        raise SystemExit(
            f"error: {dag_id} run {run_id} ended {state}: open it in the Airflow UI for the "
            "task logs"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--airflow-url", required=True)
    parser.add_argument("--passwords-file", type=Path, required=True, help="Airflow's, for admin")
    args = parser.parse_args(argv)
    try:
        password = json.loads(args.passwords_file.read_text() or "{}")[ADMIN_USER]
    except (OSError, ValueError, KeyError):
        raise SystemExit(f"error: no {ADMIN_USER} password in {args.passwords_file}") from None
    try:
        runs = deploy(AirflowClient(args.airflow_url, ADMIN_USER, password))
    except (AirflowApiError, TimeoutError) as exc:
        raise SystemExit(f"error: Airflow did not complete the deploy: {exc}") from None
    print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
