# servelab: `make lab` runs the lab on this machine, `make test` runs the tests,
# `make bench` prints the speed and footprint figures. Each target sets up what
# it needs on a fresh machine first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The exact versions CI and the lab install; pyproject.toml holds the ranges.
CONSTRAINTS := constraints.txt
PLAN ?= plans/quick.yml
# ansible-playbook and ansible-lint find their siblings (ansible-galaxy, ...) on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: all lab test lint bench proto proto-check venv clean docker-engine

all: test

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=25"
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[server,controller,dev]"
	touch $@

venv: $(VENV)/.installed

lab: venv
	$(BIN)/ansible-playbook lab.yml -e servelab_plan_file=$(abspath $(PLAN))

# The wire contract's Python modules, generated from wire/tfserving.proto.
proto: venv
	$(PY) -m grpc_tools.protoc -I wire --python_out=wire --pyi_out=wire wire/tfserving.proto

proto-check: venv
	@tmp=$$(mktemp -d) && \
	$(PY) -m grpc_tools.protoc -I wire --python_out=$$tmp --pyi_out=$$tmp wire/tfserving.proto && \
	diff -q $$tmp/tfserving_pb2.py wire/tfserving_pb2.py && diff -q $$tmp/tfserving_pb2.pyi wire/tfserving_pb2.pyi && \
	rm -rf $$tmp || { echo "wire/tfserving_pb2.py is stale: run 'make proto'"; exit 1; }

lint: venv proto-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint

# Headless Chromium opens the HTML report in the tests (Debian's package). The
# lab's own daemons (HAProxy, Prometheus, node exporter) are installed by its roles.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

# The scrape-coverage test runs Debian's Prometheus on its own, before any role has
# installed it.
PROMETHEUS := /usr/bin/prometheus
$(PROMETHEUS):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus

# The docker runtime's tests need a Docker engine and debootstrap (Debian's packages);
# Debian's dockerd is started when no engine answers (no systemd is assumed).
DOCKERD := /usr/sbin/dockerd
$(DOCKERD):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap

docker-engine: venv $(DOCKERD)
	$(PY) -m tests.support.docker start

test: lint $(CHROMIUM) $(PROMETHEUS) docker-engine
	$(BIN)/pytest -m "not slow"

# Every benchmark runs; the target fails if any found its figure off target.
bench: venv
	@status=0; \
	$(PY) -m bench.refserver_overhead --repeats 3 || status=1; \
	$(PY) -m bench.client_pool || status=1; \
	$(PY) -m bench.proxy_overhead || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
