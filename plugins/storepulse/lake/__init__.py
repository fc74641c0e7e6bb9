"""The lake's contract, in one place: what lives where in the lake bucket and how to read it.

- ``storepulse.lake.paths``: the zones (raw, quarantine, staging, curated, rollups, quality,
  reference) and the key of every folder the export, the stream and the readers use.
- ``storepulse.lake.manifest``: a published partition's manifest (written by the export's publish
  step, its commit point) and the manifest-aware reader every consumer resolves partitions with.
- ``storepulse.lake.tables``: the curated data sets' columns as Athena/Glue types, derived from
  their Arrow schemas (``storepulse.export.datasets``), and the one Glue table definition
  (partition projection) that the export and the QuickSight deploy both ensure.
- ``storepulse.lake.filesystem``: the one pyarrow filesystem factory (local or S3).
- ``storepulse.lake.bucket``: the one way to find the lake bucket.

Nothing heavy at import time (pyarrow is imported where a function needs it).
"""
