"""The real-time dashboard, served by Airflow's api-server under ``/dashboard/``.

- ``app``: the FastAPI app (every route behind Airflow's login), its JSON API and static files.
- ``live``: today's numbers from DynamoDB (KPI tiles, per-minute series, sales mix, funnel, foot
  traffic, stock cover, alerts).
- ``history``: daily trends from the lake's curated Parquet files.
- ``settings``: the KPI selection and the alert thresholds, through ``SettingsStore``.
- ``access``: which stores each user may see.

Nothing here is imported by the Airflow plugin at start-up: ``storepulse_plugin`` builds the app
on the first request, so the scheduler and the other Airflow processes never load it.
"""
