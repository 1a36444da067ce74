# The two commands of the README:
#   make demo   install into .venv and run the embedded default end to end
#   make test   install into .venv (test extras, Kafka jars) and run the tests
# and, outside CI (slow):
#   make mutation [MODULE=transport/_codec.py] [JOBS=1]   mutation testing of the core modules (docs/testing.md)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: demo test install install-test mutation clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# the demo starts a Tiled server: the `server` extra
install: $(VENV)/bin/activate
	$(PY) -m pip install -q -e ".[server]"

install-test: $(VENV)/bin/activate
	$(PY) -m pip install -q -e ".[test,kafka,server,stack]"
	@# the example plugin package (docs/plugins.md), whose tests run with ours; --no-deps: its dependencies are
	@# the line above's, and a tomobluesky outside its declared range must fail its test, not be fetched from PyPI
	$(PY) -m pip install -q --no-deps -e examples/tomobluesky-example-steps
	@if $(PY) -c "import tomobluesky.services.kafka" 2>/dev/null; then $(PY) -m tomobluesky.cli_kafka fetch; fi
	@# the viewer's browser test drives Debian's Chromium
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium; the browser test will fail"
	@# the queueserver test (tests/system/test_queueserver.py) starts Debian's redis-server
	@command -v redis-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || echo "warning: could not install redis-server; the queueserver test will fail"
	@# `tomobluesky stack` runs Debian's PostgreSQL server (tests/system/test_stack.py)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || echo "warning: could not install postgresql; the stack test will fail"

demo: install
	$(VENV)/bin/tomobluesky demo $(ARGS)

# the system tests mostly wait on servers and child processes: two pytest workers (one per core of a
# small CI machine) halve the wall time; --dist loadfile keeps each module's fixtures in one worker
PYTEST_WORKERS ?= 2

test: install-test
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

# MODULE: a path under tomobluesky/ (a .py file or a folder); empty: every module of [tool.mutmut] only_mutate
MODULE ?=
JOBS   ?= 2
MUTANTS = $(if $(MODULE),"tomobluesky.$(subst /,.,$(patsubst %.py,%,$(patsubst %/,%,$(MODULE)))).*")
# the tests run from mutants/, so the checkout's ../shared is named for them
TOOTH ?= $(or $(TOMOBLUESKY_TOOTH),$(abspath ../shared/data/tooth.h5))

mutation: $(VENV)/bin/activate
	@$(PY) -c "import mutmut, pytest, hypothesis" 2>/dev/null || $(PY) -m pip install -q -e ".[test,mutation]"
	TOMOBLUESKY_TOOTH=$(TOOTH) $(VENV)/bin/mutmut run --max-children $(JOBS) $(MUTANTS)
	$(PY) tests/mutation_score.py $(MUTANTS)

clean:
	rm -rf $(VENV) .pytest_cache mutants
