"""Alembic migrations of the fleet server database; run them with `fleet-server migrate`."""
