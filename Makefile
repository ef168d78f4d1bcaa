# One command to run, one to test; both set up what they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

.PHONY: up test
up: $(STAMP)
	$(VENV)/bin/consult up

test: $(STAMP)
	$(VENV)/bin/pytest
