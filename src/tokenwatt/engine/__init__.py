"""tokenwatt.engine (see its modules)."""

__all__: list[str] = []
