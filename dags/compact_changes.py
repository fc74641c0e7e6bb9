"""
### Hourly compaction: the captured changes into the curated "today so far" partitions

The change capture (`lambdas/change_capture`, `storepulse.capture`) writes every change of the
facts, metrics and inventory tables to `s3://<lake>/changes/<table>/dt=<day>/hour=<HH>/` within
seconds. Every hour (at :05 UTC) and after every deploy of the real-time stack (its Asset), this
DAG merges the changes of its data interval's hours (with the hour before and the hour after:
re-read harmlessly, and under way in a timely run) into the curated partitions of the days they
belong to: latest image per item, deletes applied (`storepulse.capture.compaction`). Each changed
partition is staged, **audited** by the nightly export's Great Expectations suites, and published
through the nightly export's publish (`_manifest.json` commit), and the task emits the same Asset
events, so the QuickSight refresh and the dashboard history see the day's data within the hour.

**Audit** (`storepulse.capture.audit`): schema, keys, ranges, known stores and currencies, and
per store and *closed* UTC hour (ended two minutes before the audit) the compacted orders' count
and revenue against the real-time metrics' hour bucket; the hour under way is not judged, and an
hour that moved during the run is judged on the tables (read again, facts and bucket). A
failed audit publishes nothing (no day of the run), writes its results to `_quality/` and fails
the task with the failed expectations and their numbers in the log; the retries judge again (a
change written but not yet captured is caught up by then).

A late change (a POS syncing yesterday's sales) republishes yesterday's partitions, and only
those. Re-running an hour publishes nothing new. Snapshots (inventory, customers) stay the
nightly export's. The nightly export remains the day's reconciliation (a full export).

**Freshness**: the task log gives, per data set, the newest change time published.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable, dag, task

from storepulse.airflow.conventions import AWS_CONN_ID, DEFAULT_ARGS
from storepulse.airflow.hooks import aws_client
from storepulse.airflow.sensors import wait_for_stack
from storepulse.assets import curated_asset, realtime_stack_asset
from storepulse.capture import COMPACTED
from storepulse.config import settings
from storepulse.deploy.stack import stack_name

log = logging.getLogger(__name__)

STACK_NAME = stack_name(settings().env)


def _stack() -> dict[str, Any]:
    """The lake bucket, the metrics and facts tables (boto3 Tables), the business's reference."""
    from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook

    from storepulse.deploy.stack import deployed_outputs
    from storepulse.export.quality import Reference
    from storepulse.lake.bucket import lake_bucket
    from storepulse.settings import load_catalog

    cfn = aws_client("cloudformation")
    outputs = deployed_outputs(cfn, STACK_NAME)
    dynamodb = DynamoDBHook(aws_conn_id=AWS_CONN_ID).conn
    catalog = load_catalog(dynamodb.Table(outputs["SettingsTable"]), rules=False)
    return {
        "bucket": lake_bucket(cfn, outputs=outputs),
        "metrics": dynamodb.Table(outputs["MetricsTable"]),
        "facts": dynamodb.Table(outputs["FactsTable"]),
        "reference": Reference.of(catalog),
    }


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable("5 * * * *", timezone="UTC"),
        assets=realtime_stack_asset(),
    ),
    start_date=pendulum.datetime(2026, 12, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lake", "changes"],
    doc_md=__doc__,
)
def compact_changes() -> None:
    @task(outlets=[curated_asset(name) for name in COMPACTED])
    def compact(
        data_interval_start: Any = None,
        data_interval_end: Any = None,
        run_id: str | None = None,
        outlet_events: Any = None,
        dag_run: Any = None,
    ) -> dict[str, Any]:
        """The interval's hours merged and published; one Asset event per data set."""
        from storepulse.airflow.hooks import lake_filesystem
        from storepulse.capture.audit import CompactionAudit, table_hours
        from storepulse.capture.compaction import Compactor, freshness, hours_of_interval
        from storepulse.export.quality.live import day_orders

        end = data_interval_end or dag_run.run_after  # an asset-triggered run has no interval
        start = min(data_interval_start or end, end - timedelta(hours=1))  # asset runs: 0 long
        stack = _stack()
        fs, root = lake_filesystem(f"s3://{stack['bucket']}")
        audit = CompactionAudit(
            fs,
            root,  # the bucket, as a path of fs
            stack["reference"],
            table_hours(stack["metrics"]),
            lambda day: day_orders(stack["facts"], day),
            run_id=run_id or "compaction",
        )
        compactor = Compactor(
            aws_client("s3"), fs, stack["bucket"], run_id=run_id or "compaction", audit=audit
        )
        # And the hour after: under way in a timely run, published so far (not judged yet).
        compacted = compactor.compact(hours_of_interval(start, end + timedelta(hours=1)))
        for c in compacted:
            log.info(
                "%s dt=%s: %d rows, %d change rows read, %s",
                c.dataset,
                c.day,
                c.rows,
                c.changes,
                "published" if c.published else "unchanged",
            )
        newest = freshness(compacted)
        for dataset in COMPACTED:
            log.info("freshness %s: newest change %s", dataset, newest.get(dataset) or "none")
            if outlet_events is not None:
                outlet_events[curated_asset(dataset)].extra = {
                    "days": sorted(
                        {c.day for c in compacted if c.dataset == dataset and c.published}
                    ),
                    "newest_change": newest.get(dataset, ""),
                }
        return {"partitions": len(compacted), "published": sum(c.published for c in compacted)}

    wait_for_stack(STACK_NAME) >> compact()


compact_changes()
