"""Deploying the real-time path: the Lambda package (``package``), the template check (``lint``),
the stack through a change set (``stack``), the template's intrinsic functions (``intrinsics``),
the deployed resources' verification (``verify``), the smoke test (``smoke``) and what a teardown
leaves (``teardown``).

The ``deploy_realtime_stack`` and ``teardown_realtime_stack`` DAGs only wire these together; the
integration tests call them directly against the embedded AWS.
"""
