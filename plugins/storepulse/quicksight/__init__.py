"""QuickSight: the declared data source, SPICE data sets and dashboard, and their refresh.

``infra/quicksight/datasets.json`` declares everything (see its ``$comment``):

- ``declarations``: its model, validation and loading (columns derived from the lake);
- ``requests``: the QuickSight and Glue API requests built from it;
- ``deployment``: ``deploy``, describe then create, update or leave alone;
- ``refresh``: the plan of each SPICE refresh and the record of its outcome (the DAG starts and
  waits for ingestions with the Amazon provider's operator and sensor).
- ``access`` (imported by its own name): groups per role, users, permissions and the
  row-level-security rules, all from the dashboard grants (``storepulse.settings.StoreAccess``).

Only boto3 clients are passed in, so the same code runs in Airflow tasks (provider hooks' clients),
CLIs and tests. Nothing heavy is imported: DAG files may import this module.
"""

from __future__ import annotations

from storepulse.quicksight.declarations import (
    DECLARATIONS_FILE,
    DEFAULT_QUOTA,
    Column,
    DataSet,
    DeclarationError,
    Declarations,
    load_declarations,
    parse,
    validate,
    with_lake_columns,
)
from storepulse.quicksight.deployment import (
    DeployError,
    DeployReport,
    deploy,
    ensure_catalog,
)
from storepulse.quicksight.refresh import (
    ACTIVE_STATUSES,
    IngestionResult,
    Plan,
    RefreshError,
    check_results,
    collect_results,
    describe_ingestion,
    ingestion_result,
    list_ingestions,
    manual_ingestions_since,
    new_ingestion_id,
    plan_data_set,
    plan_refresh,
    plan_result,
)
from storepulse.quicksight.requests import (
    dashboard_definition,
    data_set_request,
    data_source_request,
    definition_hash,
    glue_table_input,
)

__all__ = [
    "ACTIVE_STATUSES",
    "DECLARATIONS_FILE",
    "DEFAULT_QUOTA",
    "Column",
    "DataSet",
    "DeclarationError",
    "Declarations",
    "DeployError",
    "DeployReport",
    "IngestionResult",
    "Plan",
    "RefreshError",
    "check_results",
    "collect_results",
    "dashboard_definition",
    "data_set_request",
    "data_source_request",
    "definition_hash",
    "deploy",
    "describe_ingestion",
    "ensure_catalog",
    "glue_table_input",
    "ingestion_result",
    "list_ingestions",
    "load_declarations",
    "manual_ingestions_since",
    "new_ingestion_id",
    "parse",
    "plan_data_set",
    "plan_refresh",
    "plan_result",
    "validate",
    "with_lake_columns",
]
