"""The local platform: ``make up`` / ``make down``
(``python -m storepulse_local.platform up|down``)."""
