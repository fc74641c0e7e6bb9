"""Change capture: DynamoDB Streams records of the lake's tables, as typed Parquet in
``s3://<lake>/changes/`` (``changes``: decoding and rows; ``sink``: the objects)."""
