# Quantum Leap — two commands: `make up` (main job) and `make test` (every test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install up test bench stress lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e . --group dev
	@touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/qlcore up

stress: install
	QLCORE_STRESS_KILLS=$${QLCORE_STRESS_KILLS:-200} QLCORE_TEST_PG_URL=$${QLCORE_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} $(BIN)/python -m pytest -p no:cacheprovider -s tests/integration/test_engine_crash.py

test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/ruff check qlcore tests benchmarks
	$(BIN)/mypy qlcore

clean:
	rm -rf $(VENV) .pytest_cache
