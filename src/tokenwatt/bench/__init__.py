"""tokenwatt.bench (see its modules)."""

__all__: list[str] = []
