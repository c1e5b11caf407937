# make run   - serve the shipped model at http://localhost:8000/upload
# make test  - set everything up and run the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed
MNIST := data/MNIST/raw/t10k-labels-idx1-ubyte
DEBS := chromium dataset-fashion-mnist fonts-dejavu-core wrk

.PHONY: run test train bench soak data debs clean

run: $(STAMP)
	$(BIN)/uvicorn main:app --host $(HOST) --port $(PORT) --no-access-log

test: $(STAMP) $(MNIST) debs
	$(BIN)/python -m pytest -q

bench: $(STAMP) $(MNIST) debs
	$(BIN)/python bench/bench.py

soak: $(STAMP) $(MNIST) debs
	$(BIN)/python bench/soak.py

train: $(STAMP)
	$(BIN)/python train.py

data: $(MNIST)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(MNIST): | $(STAMP)
	$(BIN)/python dataset.py

# Debian packages the tests use: Chromium for the browser tests (Playwright's own download can't be
# reached from here), Fashion-MNIST and fonts for the not-a-digit measurements, wrk for bench/.
debs:
	@dpkg -s $(DEBS) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS); }

clean:
	rm -rf $(VENV) data/MNIST
