# make run   - serve the shipped model at http://localhost:8000/upload
# make test  - set everything up and run the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed
MNIST := data/MNIST/raw/t10k-labels-idx1-ubyte
CHROMIUM := /usr/bin/chromium

.PHONY: run test train data clean

run: $(STAMP)
	$(BIN)/uvicorn main:app --host $(HOST) --port $(PORT)

test: $(STAMP) $(MNIST) $(CHROMIUM)
	$(BIN)/python -m pytest -q

train: $(STAMP)
	$(BIN)/python train.py

data: $(MNIST)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(MNIST): | $(STAMP)
	$(BIN)/python dataset.py

# The browser tests drive Debian's Chromium; Playwright's own download can't be reached from here.
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

clean:
	rm -rf $(VENV) data/MNIST
