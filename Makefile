# Two commands on a fresh machine (Python 3.11): `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# pytest-xdist processes for `make test` and `make test-fast` (auto: one per CPU; 0: run in this process)
TEST_WORKERS ?= auto
# Browser tests share one worker (one chromium, one server of each kind): see tests/conftest.py
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadgroup

# Use the full CIFAR-10 beside the project when it is there (else the app uses its bundled sample).
SHARED_CIFAR := $(wildcard ../shared/data/cifar-10-batches-py)
ifneq ($(SHARED_CIFAR),)
export CIFAR10_DIR ?= $(abspath $(SHARED_CIFAR))
endif

.PHONY: run test test-fast lint format install install-dev benchmarks clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## Start the dashboard with the shipped models (works offline once installed).
run: $(VENV)/.installed
	$(PY) -m streamlit run streamlit_app.py --server.port $(PORT)

## Run the whole test suite (the 15 slowest tests listed last); "no tests collected" (pytest exit 5) is a failure.
test: $(VENV)/.installed-dev
	@$(PY) -m pytest $(PYTEST_PARALLEL) --durations=15 $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$status

## The quick part of the suite (no browser, worker, full-model or other slow tests), for the edit-test loop.
test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_PARALLEL) -q -m "not slow and not browser" $(PYTEST_ARGS)

## Lint and format check (ruff, configured in pyproject.toml).
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Format the tree as `make lint` expects (ruff format, settings in pyproject.toml)
format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .

## Re-measure every shipped model and the speed figures (writes benchmarks/RESULTS.md).
benchmarks: $(VENV)/.installed-dev
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache runs
