"""
### Nightly export: DynamoDB to the audited, partitioned Parquet lake

Every night the day's data becomes `s3://<lake>/curated/<dataset>/dt=YYYY-MM-DD/` (Parquet, one
versioned Arrow schema per data set, `storepulse.export.datasets`), audited by Great
Expectations before anything is published. One run per data interval, **without catch-up**:
a first start (or a scheduler down for days) runs only the latest day, never a burst of runs
for days before the stack existed. Export past days on purpose with a backfill, one day or a
range: `airflow backfill create --dag-id nightly_export --from-date 2026-11-23 --to-date
2026-12-01` (`--reprocess-behavior completed` to redo days already exported). Not `airflow dags
trigger --logical-date D`: Airflow 3.3 gives a triggered run the day that ended before it was
triggered (through the REST API: before D), not D. Rerunning (clearing) a day is an ordinary
operation: an unchanged day publishes nothing new.

0. **wait_for_stack**: waits (rescheduled, freeing its worker slot) until the real-time stack
   exists and serves: a run scheduled before the first deploy waits for it instead of failing.

**The business day** of a run is its data interval's start, in the business's time zone (the
settings table's business profile; UTC without one). The schedule is daily at 00:00 UTC, so the
interval [D 00:00 UTC, D+1 00:00 UTC) exports business day D for a business at or east of UTC
(Paris: D 01:00), and D-1 for one west of it (New York: D-1 19:00); either way the run starts
after that business day has ended. Rows are filed under each *store's* local date, as the
real-time path files them: data that arrives later is exported by rerunning its day.

1. **resolve**: the stack's outputs (tables, lake bucket, alert topic), the business's stores,
   currencies and time zone, the business day.
2. **export_facts / export_metrics / export_inventory** (param `strategy`): `auto` (default)
   exports the day's changes where they can rebuild it (`incremental`, below), else picks
   `pitr` or `scan` per table from DescribeTable's size, and logs why
   (`sources.choose_strategy`: a native export's minutes of fixed cost against a scan's pace and
   read units; scan when PITR is off); `incremental`, `pitr` or `scan` force one (`incremental`
   falls back to `pitr`, logged, where it cannot apply). `incremental`
   (`storepulse.export.incremental`): DynamoDB's incremental exports of the span in which the
   day's items can change (from its first local midnight among the stores, less an hour, to
   the export; chained 24 h at a time), the snapshots from the day before's published ones with
   the changes applied; its cost follows the day's changes, not the table. Not for a first run
   (no recovery history, no snapshot of the day before), a day more than 4 days back (backfill,
   repair: full) or a table without PITR: then the full export, and the log says why.
   `pitr`: the table must have point-in-time recovery on, as the template declares it (the
   task fails and says so otherwise: it does not reconfigure a table the stack owns), then
   DynamoDB's native export to `staging/<run>/_exports/<table>/try-<n>/`, a consistent
   snapshot read without table capacity: the whole table. `scan`: no
   export; the stage task scans the table (parallel, consistent), for tables without PITR.
3. **stage_facts / stage_metrics / stage_inventory**: one streamed pass over a table's items
   (for `incremental`: the changed items, plus the day before's snapshot rows as items)
   writes the day's partition of every data set it feeds to `staging/<run>/<dataset>/dt=<day>/`
   (zstd, sorted by key, byte-for-byte reproducible: both strategies give identical files).
   An export's files are converted in Arrow batches (`export.columnar`), a scan's item by item.
4. **audit**: the Great Expectations suites of `storepulse.export.quality` on the staged files
   (schema, non-null and unique keys, value ranges, known stores and currencies, row counts
   against the source, revenue reconciliation with the real-time metrics: a store whose day
   moved between the snapshots, e.g. a POS syncing during the export, is reconciled on the
   tables instead and logged; a mismatch the tables still hold fails). Results:
   `s3://<lake>/_quality/<dataset>/dt=<day>/` (`result.json`, `index.html`) and
   `_quality/_summary/dt=<day>/index.html`. **A failing audit publishes nothing**: it sends an
   SNS alert to the stack's alert topic naming the failed expectations (attributes
   `type=data_quality`, `severity=critical`) and fails the run; the publish tasks never run.
5. **publish_&lt;dataset&gt;** (one per data set): copies the staged files to the curated partition
   under new names, commits its `_manifest.json`, then deletes the previous files (readers that
   follow the manifest see the old files or the new, never a mix); creates or updates the Glue
   database `storepulse_<env>_curated` and the table (days are projected); emits the data
   set's Asset event (`curated_asset(name)`, extra `{day, rows, files}`) that schedules the
   QuickSight refresh. A snapshot's publish records when it was taken
   (`state/export/snapshots/`): the next day's incremental export starts from it.
6. **rollup**: after `publish_daily_store_metrics`, the day's rows replace that day in
   `curated/_rollups/daily_store_metrics/v<N>/year=YYYY/part-00000.parquet` (one object a
   year, `storepulse.export.rollup`), what the dashboard's history reads first; a rerun of the
   day rewrites it, an unchanged day leaves it as it is.

7. **republish_late_days**: the incremental export also sees items of earlier days that changed
   (late events: a POS syncing yesterday's sales); the current night's run re-runs each such
   day's run (at most 4 days back), which re-exports and re-publishes that day alone (its own
   window, audited as always). Airflow keeps one run per logical date: the day's run is
   whichever holds it, scheduled (`scheduled__<D+1>T00:00:00+00:00`, named by its interval's
   end), backfill or manual (`storepulse.export.republish`, through the Task SDK). A finished
   one is cleared; none: one is created with the day's interval; a queued one is left (it
   exports the change when it starts); a running one is not cleared mid-flight:
   **late_runs_settled** waits for it (rescheduled every 5 min, 12 h at most, then fails;
   each poke logs the run it waits for), then it is cleared. A run of another interval
   holding the day's logical date (a manual run triggered with a logical date but no data
   interval) is not cleared: the day is not re-published, logged as an error with the fix.
   Each decision is logged. Reruns and
   backfills (an interval that ended more than a day ago) trigger none (no cascade).

Heavy libraries (pyarrow, pandas, great_expectations) are imported inside tasks only.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime
from typing import Any

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from storepulse.airflow.conventions import AWS_CONN_ID, DEFAULT_ARGS
from storepulse.airflow.hooks import aws_client, lake_filesystem
from storepulse.airflow.sensors import wait_for_stack
from storepulse.assets import curated_asset
from storepulse.clock import system_clock
from storepulse.config import settings
from storepulse.deploy.stack import stack_name
from storepulse.export import DATASET_NAMES
from storepulse.layout import Table

log = logging.getLogger(__name__)

STACK_NAME = stack_name(settings().env)
SOURCE_TABLES = {  # table -> the stack output naming it
    Table.FACTS: "FactsTable",
    Table.METRICS: "MetricsTable",
    Table.INVENTORY: "InventoryTable",
}
STRATEGIES = ("auto", "incremental", "pitr", "scan")
ROLLED_UP = "daily_store_metrics"  # rolled up per year for the dashboard's history
# A late day's run still running is waited for (rescheduled pokes), at most as long as a night.
LATE_RUN_POKE_SECONDS = 300
LATE_RUN_WAIT_SECONDS = 12 * 3600


def _chosen_strategy(dynamodb: Any, name: str) -> str:
    """Strategy ``auto``: pitr or scan from the table's size and the fixed costs (logged)."""
    from storepulse.export.sources import (
        PointInTimeRecoveryOffError,
        choose_strategy,
        require_point_in_time_recovery,
    )

    try:
        require_point_in_time_recovery(dynamodb, name)
        pitr = True
    except PointInTimeRecoveryOffError:
        pitr = False
    table = dynamodb.describe_table(TableName=name)["Table"]
    choice = choose_strategy(table, pitr_enabled=pitr)
    log.info("%s: strategy auto chose %s: %s", name, choice.strategy, choice.reason)
    return choice.strategy


def _day(resolved: dict[str, Any]) -> date:
    return date.fromisoformat(resolved["day"])


def _read_back(fs: Any, staged: dict[str, Any], resolved: dict[str, Any]) -> list[Any]:
    """A sample of the staged rows against the table (``quality.sample``), whatever the
    strategy: the full export and the day's changes must both agree with it."""
    from storepulse.export.quality.sample import ITEM_OF_ROW, check_samples
    from storepulse.export.quality.suites import read_staged

    rows = {
        name: read_staged(fs, report.files).to_pylist()
        for name, report in staged.items()
        if name in ITEM_OF_ROW and report.files
    }
    return check_samples(aws_client("dynamodb"), resolved["tables"], rows, _day(resolved))


def _completed(kind: Any, export: dict[str, Any]) -> Any:
    return kind(**{**export, "data_keys": tuple(export["data_keys"])})


def _incremental_plan(dynamodb: Any, resolved: dict[str, Any], table: str) -> Any:
    """Whether the day's changes can rebuild this table's data sets (``incremental.Plan``)."""
    from datetime import timedelta

    from storepulse.export.datasets import datasets_of
    from storepulse.export.incremental import plan_table, recovery_window, snapshot_as_of

    day, datasets = _day(resolved), datasets_of(Table(table))
    s3 = aws_client("s3")
    before = day - timedelta(days=1)
    as_of = {
        d.name: snapshot_as_of(s3, resolved["bucket"], d.name, before)
        for d in datasets
        if d.snapshot
    }
    recovery = recovery_window(dynamodb, resolved["tables"][table])
    return plan_table(datasets, day, resolved["timezones"], recovery, as_of)


def _run_incremental(
    dynamodb: Any, resolved: dict[str, Any], table: str, plan: Any, try_number: int
) -> list[dict[str, Any]]:
    """The plan's incremental exports, one prefix each."""
    from dataclasses import asdict

    from storepulse.export.sources import PointInTimeExportSource
    from storepulse.lake.paths import export_prefix

    exports = []
    for number, window in enumerate(plan.windows):
        prefix = f"{export_prefix(resolved['run_id'], table, try_number)}/window-{number}"
        source = PointInTimeExportSource(
            dynamodb,
            aws_client("s3"),
            resolved["tables"][table],
            resolved["bucket"],
            prefix,
            incremental=window,
            client_token=hashlib.sha256(prefix.encode()).hexdigest()[:32],
        )
        export = source.run()
        log.info(
            "%s: incremental export [%s, %s): %s items in %d file(s)",
            table,
            window.start.isoformat(),
            window.end.isoformat(),
            export.item_count,
            len(export.data_keys),
        )
        exports.append(asdict(export))
    return exports


@dag(
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 23, tz="UTC"),
    catchup=False,  # past days are exported on purpose: a backfill (see above)
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lake", "export", "quality"],
    doc_md=__doc__,
    params={
        "strategy": Param(
            "auto",
            enum=list(STRATEGIES),
            description="auto (default): per table, from its size (the export task logs why); "
            "pitr: DynamoDB point-in-time export; scan: parallel scan",
        ),
    },
)
def nightly_export() -> None:
    @task
    def resolve(
        data_interval_start: Any = None,
        data_interval_end: Any = None,
        run_id: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Where everything is, and which business day this run exports."""
        from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook

        from storepulse.deploy.stack import deployed_outputs
        from storepulse.export.quality import Reference
        from storepulse.lake.bucket import lake_bucket
        from storepulse.layout import local_date
        from storepulse.settings import load_catalog

        cfn = aws_client("cloudformation")
        outputs = deployed_outputs(cfn, STACK_NAME)
        bucket = lake_bucket(cfn, outputs=outputs)
        settings_table = DynamoDBHook(aws_conn_id=AWS_CONN_ID).conn.Table(outputs["SettingsTable"])
        catalog = load_catalog(settings_table, rules=False)
        reference = Reference.of(catalog)
        timezones = sorted({reference.timezone, *(s.timezone for s in catalog.stores.values())})
        day = local_date(data_interval_start, reference.timezone)
        strategy = (params or {}).get("strategy", "auto")
        log.info(
            "business day %s (interval start %s in %s); strategy %s; lake %s; %d stores, "
            "currencies %s",
            day,
            data_interval_start,
            reference.timezone,
            strategy,
            bucket,
            len(reference.stores),
            ", ".join(sorted(reference.currencies)),
        )
        return {
            "day": day.isoformat(),
            "run_id": run_id,
            "strategy": strategy,
            "bucket": bucket,
            "topic_arn": outputs["AlertTopicArn"],
            "tables": {table.value: outputs[key] for table, key in SOURCE_TABLES.items()},
            "reference": reference.to_dict(),
            "timezones": timezones,
            "interval_end": data_interval_end.isoformat() if data_interval_end else None,
        }

    @task
    def export_table(resolved: dict[str, Any], table: str, ti: Any = None) -> dict[str, Any]:
        """Point-in-time export of one table (strategy pitr); nothing for strategy scan."""
        from dataclasses import asdict

        from airflow.sdk.exceptions import AirflowFailException

        from storepulse.export.sources import (
            PointInTimeExportSource,
            PointInTimeRecoveryOffError,
            require_point_in_time_recovery,
        )
        from storepulse.lake.paths import export_prefix

        dynamodb, s3 = aws_client("dynamodb"), aws_client("s3")
        name = resolved["tables"][table]
        strategy = resolved["strategy"]
        as_of = system_clock().isoformat()  # before the export: the snapshot is at least this new
        try_number = int(getattr(ti, "try_number", 1) or 1)
        if strategy in ("auto", "incremental"):
            plan = _incremental_plan(dynamodb, resolved, table)
            log.info("%s: %s (%s)", name, plan.strategy, plan.reason)
            if plan.strategy == "incremental":
                exports = _run_incremental(dynamodb, resolved, table, plan, try_number)
                as_of = plan.windows[-1].end.isoformat()
                return {
                    "strategy": "incremental",
                    "table": table,
                    "exports": exports,
                    "as_of": as_of,
                }
            strategy = "pitr" if strategy == "incremental" else strategy
        if strategy == "auto":
            strategy = _chosen_strategy(dynamodb, name)
        if strategy == "scan":
            log.info("strategy scan: %s is read by the stage task", name)
            return {"strategy": "scan", "table": table, "as_of": as_of}
        try:
            require_point_in_time_recovery(dynamodb, name)  # the template's to switch on, not ours
        except PointInTimeRecoveryOffError as exc:
            raise AirflowFailException(str(exc)) from exc  # a retry would find it off again
        prefix = export_prefix(resolved["run_id"], table, try_number)
        source = PointInTimeExportSource(
            dynamodb,
            s3,
            name,
            resolved["bucket"],
            prefix,
            client_token=hashlib.sha256(prefix.encode()).hexdigest()[:32],
        )
        export = source.run()
        log.info(
            "%s: %s of %s items in %d file(s) at s3://%s/%s (manifest: %s)",
            name,
            export.export_type,
            export.item_count,
            len(export.data_keys),
            export.bucket,
            export.prefix,
            export.from_manifest,
        )
        return {"strategy": "pitr", "table": table, "export": asdict(export), "as_of": as_of}

    @task
    def stage_table(
        resolved: dict[str, Any], exported: dict[str, Any], ti: Any = None
    ) -> dict[str, Any]:
        """One pass over the table's items: every data set it feeds, staged for the audit."""
        from dataclasses import replace

        from storepulse.export.datasets import datasets_of
        from storepulse.export.incremental import stage_changes
        from storepulse.export.sources import CompletedExport, ScanSource
        from storepulse.export.staging import stage_export, stage_table
        from storepulse.lake.paths import CURATED, staging_root

        table = exported["table"]
        fs, root = lake_filesystem(staging_root(resolved["bucket"], resolved["run_id"]))
        datasets, day = datasets_of(Table(table)), _day(resolved)
        late: list[str] = []
        if exported["strategy"] == "incremental":
            exports = [_completed(CompletedExport, e) for e in exported["exports"]]
            _, curated = lake_filesystem(f"s3://{resolved['bucket']}/{CURATED}")
            result = stage_changes(aws_client("s3"), exports, datasets, day, root, fs, curated)
            staged, late = result.staged, [d.isoformat() for d in result.late_days]
            log.info(
                "%s: %d change line(s), %d bytes read; late days: %s",
                table,
                result.lines_read,
                result.bytes_read,
                ", ".join(late) or "none",
            )
        elif exported["strategy"] == "pitr":  # vectorized where it applies
            export = _completed(CompletedExport, exported["export"])
            staged = stage_export(aws_client("s3"), export, datasets, day, root, fs)
        else:
            items = ScanSource(aws_client("dynamodb"), resolved["tables"][table]).items
            staged = stage_table(items, datasets, day, root, fs)
        if ti is not None:
            ti.xcom_push(key="late_days", value=late)
        for report in staged.values():
            log.info(
                "%s: %d items read, %d rows (source calls for %d), %d bytes, %d file(s)%s",
                report.name,
                report.items_read,
                report.rows,
                report.source_rows,
                report.bytes,
                len(report.files),
                "" if report.strict else f"; STAGED AS-IS, {report.rejected_count} rejected",
            )
        as_of = exported.get("as_of")
        return {name: replace(report, as_of=as_of).to_dict() for name, report in staged.items()}

    @task
    def audit(resolved: dict[str, Any], staged_tables: list[dict[str, Any]]) -> dict[str, Any]:
        """Great Expectations on the staged day; a failure alerts and fails the run."""
        from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook
        from airflow.providers.amazon.aws.hooks.sns import SnsHook
        from airflow.sdk.exceptions import AirflowFailException

        from storepulse.export.quality import AuditFailedError, Reference, audit_staged
        from storepulse.export.quality.live import table_revenue
        from storepulse.export.staging import StagedDataset

        def send_alert(alert: dict[str, Any]) -> None:
            SnsHook(aws_conn_id=AWS_CONN_ID).publish_to_target(
                target_arn=resolved["topic_arn"],
                message=alert["message"],
                subject=alert["subject"],
                message_attributes=alert["attributes"],
            )
            log.error("alert sent to %s", resolved["topic_arn"])

        staged = {
            name: StagedDataset.from_dict(report)
            for part in staged_tables
            for name, report in part.items()
        }
        bucket, tables = resolved["bucket"], resolved["tables"]
        fs, root = lake_filesystem(f"s3://{bucket}")
        dynamodb = DynamoDBHook(aws_conn_id=AWS_CONN_ID).conn
        live = table_revenue(
            dynamodb.Table(tables[Table.FACTS.value]),
            dynamodb.Table(tables[Table.METRICS.value]),
            _day(resolved),
        )
        try:
            result = audit_staged(
                fs,
                root,
                bucket,
                _day(resolved),
                Reference.from_dict(resolved["reference"]),
                staged,
                context={"run_id": resolved["run_id"], "strategy": resolved["strategy"]},
                send_alert=send_alert,
                live=live,
            )
        except AuditFailedError as exc:
            raise AirflowFailException(str(exc)) from exc
        checks = _read_back(fs, staged, resolved)
        failed = [c for c in checks if c.failed]
        if failed:
            message = "; ".join(f"{c.dataset}: {len(c.disagreeing)}/{c.checked}" for c in failed)
            send_alert(
                {
                    "subject": f"storepulse nightly export {resolved['day']}: rows disagree",
                    "message": f"staged rows disagree with the table, read back: {message}",
                    "attributes": {"type": "data_quality", "severity": "critical"},
                }
            )
            raise AirflowFailException(f"staged rows disagree with the table: {message}")
        return {
            "audit": result.to_dict(),
            "read_back": [c.to_dict() for c in checks],
            "staged": {n: s.to_dict() for n, s in staged.items()},
        }

    @task
    def publish(
        resolved: dict[str, Any],
        audited: dict[str, Any],
        dataset: str,
        outlet_events: Any = None,
    ) -> dict[str, Any]:
        """Atomic replacement of the day's partition, its Glue table, the Asset event."""
        from storepulse.export.datasets import DATASETS
        from storepulse.export.incremental import put_snapshot_as_of
        from storepulse.export.publish import publish_partition
        from storepulse.export.staging import StagedDataset
        from storepulse.lake.tables import ensure_curated_table, glue_database_name

        bucket, day = resolved["bucket"], _day(resolved)
        report = publish_partition(
            aws_client("s3"),
            bucket,
            DATASETS[dataset],
            day,
            StagedDataset.from_dict(audited["staged"][dataset]),
            run_id=resolved["run_id"],
        )
        staged = StagedDataset.from_dict(audited["staged"][dataset])
        if DATASETS[dataset].snapshot and staged.as_of:  # where tomorrow's changes start from
            put_snapshot_as_of(
                aws_client("s3"), bucket, dataset, day, datetime.fromisoformat(staged.as_of)
            )
        database = glue_database_name(settings().env)
        glue = ensure_curated_table(aws_client("glue"), database, DATASETS[dataset], bucket)
        files = [f"s3://{bucket}/{key}" for key in report.files]
        if outlet_events is not None:
            outlet_events[curated_asset(dataset)].extra = {
                "day": report.day,
                "rows": report.rows,
                "files": files,
            }
        log.info(
            "%s dt=%s: %d rows, %d bytes, %d file(s) %s, %d previous file(s) removed; "
            "glue %s.%s: %s",
            dataset,
            report.day,
            report.rows,
            report.bytes,
            len(files),
            "published" if report.changed else "unchanged (same content)",
            report.removed,
            database,
            dataset,
            glue,
        )
        return report.to_dict() | {"glue": glue}

    resolved = resolve()
    wait_for_stack(STACK_NAME) >> resolved
    staged = [
        stage_table.override(task_id=f"stage_{table.value}")(
            resolved,
            export_table.override(task_id=f"export_{table.value}")(resolved, table.value),
        )
        for table in SOURCE_TABLES
    ]

    @task
    def rollup(resolved: dict[str, Any], published: dict[str, Any]) -> dict[str, Any]:
        """The day's published daily_store_metrics into its year's rollup (cold history)."""
        from storepulse.export.datasets import DATASETS
        from storepulse.export.rollup import update_rollup
        from storepulse.lake.paths import CURATED

        fs, root = lake_filesystem(f"s3://{resolved['bucket']}/{CURATED}")
        report = update_rollup(fs, root, DATASETS[ROLLED_UP], _day(resolved))
        log.info(
            "rollup %s: %d days, %d rows, %s",
            report.path,
            report.days,
            report.rows,
            "rewritten" if report.changed else "unchanged (same bytes)",
        )
        return report.to_dict()

    @task
    def late_days(resolved: dict[str, Any], ti: Any = None) -> list[dict[str, str]]:
        """The runs to clear or create: earlier days whose items changed in tonight's windows
        (tonight's run only: a rerun or a backfill triggers none, so re-publishes never
        cascade). A day's run is whichever holds its logical date (scheduled, backfill or
        manual): `storepulse.export.republish`."""
        from datetime import timedelta

        from storepulse.airflow.runs import TaskSdkDagRuns
        from storepulse.export.incremental import MAX_LOOKBACK
        from storepulse.export.republish import Action, plan_republish, triggered

        tasks = [f"stage_{table.value}" for table in SOURCE_TABLES]
        pulled = ti.xcom_pull(task_ids=tasks, key="late_days") if ti is not None else []
        days = sorted({date.fromisoformat(d) for part in pulled or [] for d in part or []})
        end = resolved.get("interval_end")
        current = end is not None and datetime.fromisoformat(end) >= system_clock() - timedelta(
            days=1
        )
        day = _day(resolved)
        chosen = [d for d in days if day - MAX_LOOKBACK <= d < day] if current else []
        log.info(
            "late days seen: %s; re-published: %s%s",
            ", ".join(map(str, days)) or "none",
            ", ".join(map(str, chosen)) or "none",
            "" if current else " (a rerun or backfill triggers none)",
        )
        plans = plan_republish(chosen, resolved["reference"]["timezone"], TaskSdkDagRuns())
        for plan in plans:
            blocked = plan.action is Action.BLOCKED
            log.log(logging.ERROR if blocked else logging.INFO, "late day %s", plan.describe())
        return triggered(plans)

    @task.sensor(
        poke_interval=LATE_RUN_POKE_SECONDS, timeout=LATE_RUN_WAIT_SECONDS, mode="reschedule"
    )
    def late_runs_settled(late: list[dict[str, str]]) -> bool:
        """Waits (rescheduled, freeing its worker slot) until no late day's run is running: a
        run is not cleared mid-flight, its export may have read the table before the change."""
        from storepulse.airflow.runs import TaskSdkDagRuns
        from storepulse.export.republish import still_running

        running = still_running(TaskSdkDagRuns(), late)
        if running:
            log.info("waiting for %s to end before clearing it", ", ".join(running))
        return not running

    audited = audit(resolved, staged)
    published_tasks = []
    for name in DATASET_NAMES:
        published = publish.override(task_id=f"publish_{name}", outlets=[curated_asset(name)])(
            resolved, audited, name
        )
        published_tasks.append(published)
        if name == ROLLED_UP:
            rollup(resolved, published)
    late = late_days(resolved)
    published_tasks >> late
    # Clearing a day's run re-runs it whole: its own window, audit and publish.
    late_runs_settled(late) >> TriggerDagRunOperator.partial(
        task_id="republish_late_days",
        trigger_dag_id="nightly_export",
        reset_dag_run=True,
        wait_for_completion=False,
    ).expand_kwargs(late)


nightly_export()
