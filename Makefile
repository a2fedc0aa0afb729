# leadpipe: the two commands that work on a fresh machine are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
NEW_ENOUGH := import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)

.PHONY: run test check fmt lint types bench sandbox clean

# Idempotent bootstrap: re-installs only when pyproject.toml changes. `make run` gets the runtime
# dependencies only; the tests, linters and benchmarks get the development extras on top.
# leadpipe's own modules are compiled once here: where PYTHONDONTWRITEBYTECODE is set (many
# container images), Python would otherwise compile them again at every command (~0.2 s).
$(STAMP): pyproject.toml
	@$(PYTHON) -c '$(NEW_ENOUGH)' 2>/dev/null || { \
	  echo "leadpipe needs Python 3.11 or newer; '$(PYTHON)' is: $$($(PYTHON) -V 2>&1)."; \
	  echo "Install one and run e.g.: make $(MAKECMDGOALS) PYTHON=python3.11"; exit 1; }
	@if [ -e $(VENV) ] && ! $(BIN)/python -c '$(NEW_ENOUGH)' 2>/dev/null; then \
	  echo "$(VENV) was made by another (older or missing) Python: making it again"; \
	  rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m compileall -q pipeline
	rm -f $(DEV)
	touch $(STAMP)

$(DEV): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV)

run: $(STAMP)
	@$(BIN)/python -m compileall -q pipeline
	$(BIN)/leadpipe run

test: $(DEV)
	$(BIN)/python -m pytest -q

check: $(DEV)
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

fmt: $(DEV)
	$(BIN)/ruff format pipeline tests bench
	$(BIN)/ruff check --fix pipeline tests bench

bench: $(DEV)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

sandbox: $(STAMP)
	$(BIN)/leadpipe sandbox

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
