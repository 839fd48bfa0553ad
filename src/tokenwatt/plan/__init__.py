"""tokenwatt.plan (see its modules)."""

__all__: list[str] = []
