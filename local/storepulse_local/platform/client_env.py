"""``make env``: the variables that point any AWS client (and the ``airflow`` CLI) at ``make up``.

    eval "$(make -s env)"     # then: aws s3 ls, python -m storepulse.settings_cli list store, ...

Printed as shell ``export`` lines for the administrator principal (every permission, as a
developer at their own account). With ``STOREPULSE_EMBEDDED_AWS=0`` only the environment and
region: clients use your own AWS credential chain.
"""

from __future__ import annotations

import shlex

from storepulse.config import Settings, load_settings
from storepulse_local.iam import ADMIN
from storepulse_local.platform.airflow_local import airflow_home


def client_variables(settings: Settings) -> dict[str, str]:
    """What an AWS CLI, boto3 or the project's CLIs need to reach the platform's AWS, and the
    ``airflow`` CLI its Airflow (``airflow backfill create ...``)."""
    variables = {
        "STOREPULSE_ENV": settings.env,
        "AWS_DEFAULT_REGION": settings.region,
        "AIRFLOW_HOME": str(airflow_home(settings)),
    }
    if settings.embedded_aws:
        variables |= {"AWS_ENDPOINT_URL": settings.embedded_aws_url, **ADMIN.environment()}
    return variables


def render(settings: Settings) -> str:
    variables = client_variables(settings).items()
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in variables)


def main() -> int:
    print(render(load_settings()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
