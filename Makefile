# make run   - serve the shipped model at http://localhost:8000/upload, one worker per core (WORKERS=N to choose)
# make test  - set everything up, lint, and run the whole suite
# make lint  - ruff check, ruff format --check and mypy, as configured in pyproject.toml
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed
PEERS_VENV := .venv-peers
PEERS := $(PEERS_VENV)/.installed
MNIST := data/MNIST/raw/t10k-labels-idx1-ubyte
DEBS := chromium dataset-fashion-mnist fonts-dejavu-core wrk nginx postgresql

.PHONY: run test lint claims train bench soak data debs clean

run: $(STAMP)
	$(BIN)/python serve.py --host $(HOST) --port $(PORT) $(if $(WORKERS),--workers $(WORKERS))

test: lint $(MNIST) debs
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# Every figure the README states, measured again (python bench/claims.py --fast runs inside make test).
claims: $(STAMP) $(MNIST) debs
	$(BIN)/python bench/claims.py

bench: $(STAMP) $(PEERS) $(MNIST) debs
	$(BIN)/python bench/bench.py

# LitServe and BentoML, the servers bench/ compares this one with, in a venv of their own.
$(PEERS): bench/requirements-peers.txt requirements-serve.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --disable-pip-version-check -q -r bench/requirements-peers.txt
	touch $@

soak: $(STAMP) $(MNIST) debs
	$(BIN)/python bench/soak.py

train: $(STAMP)
	$(BIN)/python train.py

data: $(MNIST)

$(STAMP): requirements.txt requirements-serve.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(MNIST): | $(STAMP)
	$(BIN)/python dataset.py

# Debian packages the tests use: Chromium for the browser tests (Playwright's own download can't be
# reached from here), Fashion-MNIST and fonts for the not-a-digit measurements, wrk for bench/, and
# nginx and PostgreSQL for the replicas behind a load balancer (the tests start their own, on loopback).
debs:
	@dpkg -s $(DEBS) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS); }

clean:
	rm -rf $(VENV) $(PEERS_VENV) data/MNIST
