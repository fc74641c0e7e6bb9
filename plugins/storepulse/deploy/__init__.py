"""Deploying the real-time path: the Lambda package (``package``), the template check (``lint``),
and the stack itself with its verification, smoke test and teardown report (``stack``).

The ``deploy_realtime_stack`` and ``teardown_realtime_stack`` DAGs only wire these together; the
integration tests call them directly against the embedded AWS.
"""
