"""The local platform: ``make up`` / ``make down`` (``python -m storepulse.platform up|down``)."""
