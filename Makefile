# One entry point for a fresh machine: `make demo`, `make test`, `make bench`.
# System packages come from apt (root, or sudo when available); Python ones go to .venv.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
APT_PACKAGES := python3-venv gearman-job-server gearman-tools mariadb-server mariadb-client \
	postgresql-15 php-cli php-gearman libgearman-client-perl gearman-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# apt can run as root, or through sudo; where neither is there, `make demo` goes without it.
CAN_APT := $(shell [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null && echo yes)
PYTEST_ARGS ?= -n 2
# The oldest pytest and pluggy the package declares, and the part of the suite run on them.
OLDEST_VENV ?= .venv-oldest
OLDEST_PINS := pytest==7.0.0 pluggy==1.2.0
OLDEST_TESTS := tests/plugin/test_fixtures.py tests/library/test_api.py

.PHONY: help system-deps no-apt venv venv-test compile demo test test-oldest bench lint clean

help:
	@echo "make demo   install what is missing, then run a job end to end through a real gearmand"
	@echo "            (without root or sudo: on the embedded Gearman server when gearmand is missing)"
	@echo "make test   install what is missing (with test extras), then run the whole suite"
	@echo "make test-oldest  run part of the suite on the oldest pytest and pluggy supported"
	@echo "make bench  run the benchmarks (after make test's set-up) and print the table"
	@echo "make lint   ruff check, format check and mypy --strict on src/"

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]' -e examples/derivatives
	touch $@

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test

# Editable installs are not byte-compiled and PYTHONDONTWRITEBYTECODE may forbid caching:
# compile up front so no worker process pays for compiling the package, or the job modules
# of the suite and the benchmarks (tests/jobs.py, benchmarks/jobs.py), at start-up.
compile: venv
	$(PY) -m compileall -q src examples tests benchmarks >/dev/null

demo: $(if $(CAN_APT),system-deps,no-apt) venv compile
	$(PY) -m pip install -q -e examples/derivatives
	$(PY) examples/demo.py
	$(VENV)/bin/pytest -q -p no:cacheprovider -c examples/derivatives/pyproject.toml examples/derivatives/tests

# Without root or sudo the demo runs on the embedded Gearman server when gearmand is missing.
no-apt:
	@echo "apt cannot run here (not root, no sudo): system packages skipped; without gearmand the demo uses the embedded Gearman server"

test: system-deps venv-test compile
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Without the docker extra: the Docker cases are deselected (under CI=true they would fail).
$(OLDEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q $(OLDEST_PINS) -e .
	touch $@

test-oldest: system-deps $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/pytest -p no:cacheprovider -q -k "not docker" $(OLDEST_TESTS)

bench: system-deps venv-test compile
	$(PY) -m benchmarks $(BENCH_ARGS)

lint: venv-test
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .pytest_cache .ruff_cache bench-results.json
