"""tokenwatt.warehouse (see its modules)."""

__all__: list[str] = []
