"""The ``tokenwatt`` command line: a thin typer layer over the public library API."""
