"""Stream processing: Kinesis batches become exactly-once DynamoDB aggregates, lake archives and
alerts. ``processor.StreamProcessor`` is the entry; the Lambda handler only wires it up."""
