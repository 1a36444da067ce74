# The two commands of the README:
#   make demo   install into .venv and run the embedded default end to end
#   make test   install into .venv (test extras, Kafka jars) and run the tests
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: demo test install install-test clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(VENV)/bin/activate
	$(PY) -m pip install -q -e .

install-test: $(VENV)/bin/activate
	$(PY) -m pip install -q -e ".[test,kafka]"
	@if $(PY) -c "import tomobluesky.services.kafka" 2>/dev/null; then $(PY) -m tomobluesky.cli_kafka fetch; fi
	@# the viewer's browser test drives Debian's Chromium
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium; the browser test will fail"

demo: install
	$(VENV)/bin/tomobluesky demo $(ARGS)

test: install-test
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
