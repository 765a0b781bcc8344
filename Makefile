# Two commands do everything on a fresh Debian machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=
# The tests mostly wait on their services: four xdist workers keep two cores busy (tests/conftest.py
# says which tests share a worker). TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= 4

.PHONY: demo test lint typecheck unit bench setup clean plugin

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "lantaarn needs Python 3.11 or newer"'
	@PYTHON=$(PYTHON) bash scripts/system-deps.sh python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The pinned JavaScript (Swagger UI, the dashboard's libraries, the linters): again whenever the
# script's pins change, and when its copies are missing.
JS_STAMP := dashboards/static/vendor/VERSIONS
$(JS_STAMP): scripts/vendor-js.sh $(STAMP)
	@bash scripts/vendor-js.sh $(VENV)/js
	@touch $(JS_STAMP)

setup: $(STAMP) $(JS_STAMP)

# The broker plugin (broker/plugin/): client ids bound to logins, device subscriptions, limits.
plugin:
	@bash scripts/system-deps.sh mosquitto-dev libmosquitto-dev libssl-dev gcc make
	$(MAKE) -s -C broker/plugin

demo: $(STAMP) $(JS_STAMP) plugin
	@bash scripts/system-deps.sh mosquitto influxdb
	$(BIN)/lantaarn demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) $(JS_STAMP) plugin
	@bash scripts/system-deps.sh mosquitto influxdb chromium prometheus prometheus-alertmanager
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP) $(JS_STAMP) plugin
	@bash scripts/system-deps.sh mosquitto influxdb
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
	$(MAKE) -s -C broker/plugin clean
