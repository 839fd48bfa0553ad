# Two commands a new user needs: `make demo` and `make test`. Both install into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format unit redis clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: on CPU-only machines this resolves to the CPU build, so the
	# package install below (torch>=2.1) finds it satisfied and pulls no CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/tokenwatt demo

redis:
	@bash scripts/ensure-redis.sh

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

unit: install
	$(PY) -m pytest -q

test: install redis lint unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
