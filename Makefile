# Developer commands. Everything installs into .venv/ in this checkout, so a
# machine needs only Python >= 3.11 with the venv module and make.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install; the install reruns when pyproject.toml is newer.
STAMP := $(VENV)/.zhigui-installed

.DEFAULT_GOAL := help
.PHONY: help test lint fmt demo clean

help:
	@echo "make demo   run the simulator demo (kiosk-sim demo)"
	@echo "make test   run ruff, ruff format --check, mypy and pytest"
	@echo "make lint   run ruff, ruff format --check and mypy only"
	@echo "make fmt    reformat the code and apply ruff's safe fixes"
	@echo "make clean  remove .venv/ and the tool caches"

$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "error: $(PYTHON) has no venv/ensurepip module; on Debian run: apt-get install python3-venv" >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# pytest exits with 5 when it collected no tests; a run that tested nothing fails here.
test: lint
	@status=0; $(BIN)/pytest || status=$$?; \
	if [ $$status -eq 5 ]; then \
		echo "error: pytest collected no tests (exit status 5); check testpaths and test file names" >&2; \
		exit 1; \
	fi; \
	exit $$status

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP)
	$(BIN)/kiosk-sim demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info build
