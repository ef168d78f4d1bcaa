# One command to run, one to test; both set up what they need on a fresh machine.
# Tests run on three workers (pytest-xdist), each taking the next test as it finishes one
# (worksteal): they mostly wait on brokers and stores, and two workers left about half of two
# cores idle (10 min against 8 on a slow machine).
# `make up ARGS="--port 8100 --broker-port 9192"` passes options to `consult up`.
PYTHON ?= python3
ARGS ?=
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

.PHONY: up test
up: $(STAMP)
	$(VENV)/bin/consult up $(ARGS)

test: $(STAMP)
	$(VENV)/bin/pytest -n 3 --dist worksteal
