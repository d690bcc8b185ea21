# KMM Confidential Records Service
# make run   - install (runtime dependencies only), migrate a local SQLite database, seed the demo,
#              serve on 127.0.0.1:8000 (make run PORT=8080 for another port)
# make test  - install with the dev tools, then the whole suite on SQLite, and again on Postgres
#              when TEST_DATABASE_URL is set
# make test-fast - all but the tests marked slow, on SQLite only: the edit-run loop
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# make test-fast spreads the tests over this many processes (pytest-xdist), one a core
FAST_WORKERS ?= auto

.PHONY: run install install-runtime test test-fast test-sqlite test-postgres lint fuzz bench soak clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# What the service needs to run; `install` adds the dev tools (tests, lint, profiling).
$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-runtime

install-runtime: $(VENV)/.installed-runtime

install: $(VENV)/.installed

run: install-runtime
	$(BIN)/kmm migrate
	$(BIN)/kmm seed-demo
	@echo ""
	@echo "Serving on http://$(HOST):$(PORT)  - docs explorer: http://$(HOST):$(PORT)/docs"
	@echo "Use Authorize with a demo login above (username = email)."
	$(BIN)/kmm serve --host $(HOST) --port $(PORT) --no-migrate

test: install
	$(MAKE) --no-print-directory test-sqlite
	@if [ -n "$$TEST_DATABASE_URL" ]; then $(MAKE) --no-print-directory test-postgres; \
	else echo "TEST_DATABASE_URL not set: skipped the Postgres run"; fi

test-sqlite: install
	KMM_TEST_BACKEND=sqlite $(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-postgres: install
	KMM_TEST_BACKEND=postgres $(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The fast tier collects no schemathesis test, so its pytest plugin is not loaded (each process starts sooner);
# and it keeps compiled modules in __pycache__ (git-ignored) even where the environment sets
# PYTHONDONTWRITEBYTECODE: without them every worker rewrites and compiles every test module again.
test-fast: install
	PYTHONDONTWRITEBYTECODE= KMM_TEST_BACKEND=sqlite $(BIN)/pytest -q -p no:cacheprovider -p no:schemathesis -m "not slow" -n $(FAST_WORKERS) \
		$(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# Longer contract fuzzing: fresh randomness, many more examples, the coverage phase for every role.
fuzz: install
	KMM_FUZZ_EXAMPLES=$${KMM_FUZZ_EXAMPLES:-500} KMM_FUZZ_RANDOM=1 KMM_FUZZ_COVERAGE=all \
		$(BIN)/pytest -q -p no:cacheprovider tests/test_contract.py $(PYTEST_ARGS)

# make bench BENCH_ARGS="--records 20000 --duration 5"  (python -m bench --help lists the flags)
BENCH_ARGS ?=
bench: install
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
	      || echo "could not install wrk: the Python load generator will be used"; \
	  else echo "wrk not found (apt-get install wrk): the Python load generator will be used"; fi; }
	$(BIN)/python -m bench $(BENCH_ARGS)

# Two minutes of mixed traffic through uvicorn (2 workers) on Postgres; SOAK_ARGS="--seconds 30" to shorten.
soak: install
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) kmm.db kmm.db-wal kmm.db-shm
