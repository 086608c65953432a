# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 5000

.PHONY: run test train bench clean help

help:
	@echo "make run    - create .venv, install requirements, serve the default model on http://localhost:$(PORT)"
	@echo "make test   - install dev requirements and run the whole test suite"
	@echo "make train  - retrain both shipped models (data from SCRIPTORIUM_DATA or downloaded)"
	@echo "make bench  - run the generation benchmark"

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	PORT=$(PORT) $(PY) app.py

test: $(VENV)/.dev
	$(PY) -m pytest

train: $(VENV)/.runtime
	$(PY) -m training train --config configs/shakespeare-gpt.yaml --output models/shakespeare-gpt $(if $(SCRIPTORIUM_DATA),--data $(SCRIPTORIUM_DATA))
	$(PY) -m training train --config configs/shakespeare-lstm.yaml --output models/shakespeare-lstm $(if $(SCRIPTORIUM_DATA),--data $(SCRIPTORIUM_DATA))

bench: $(VENV)/.runtime
	$(PY) bench/generation.py

clean:
	rm -rf $(VENV) .pytest_cache
