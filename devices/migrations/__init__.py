"""Schema migrations of the device registry (Alembic), run by `Registry.open()`."""
