"""The local platform: what runs on a laptop in place of an AWS account.

The embedded AWS (a moto server on loopback), the local Lambda runtime that invokes handlers
where AWS would, and the ``make up`` supervisor. A distribution of its own (``storepulse-local``,
the ``local`` dependency group): the Lambda package and a managed Airflow install nothing of it,
and production code (``storepulse``, ``dags/``, ``lambdas/``) never imports it.
"""
