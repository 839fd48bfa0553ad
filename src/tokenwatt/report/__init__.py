"""tokenwatt.report (see its modules)."""

__all__: list[str] = []
