# The two commands of the README:  make demo  (run the appliance)  and  make test  (run the whole test suite).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test venv venv-dev services browser bench clean ami-bundle

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt

venv-dev: venv
	$(BIN)/pip install --quiet -r requirements-dev.txt

demo: venv
	$(BIN)/python manage.py quickstart --host $(HOST) --port $(PORT)

services:
	bash scripts/ensure-services.sh

browser:
	bash scripts/ensure-browser.sh

test: venv-dev services browser
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python -m appliance.runtime.bench

clean:
	rm -rf var .pytest_cache

ami-bundle:
	mkdir -p ami/build
	git archive --format=tar.gz -o ami/build/appliance.tar.gz HEAD
