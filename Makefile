# make run   - serve the shipped model at http://localhost:8000/upload, one worker per core (WORKERS=N to choose)
# make test  - set everything up, lint, and run the whole suite, with a short mutation run
# make check - lint, and the unit and in-process API tests: the loop while working (under 2 minutes)
# make lint  - ruff check, ruff format --check and mypy, as configured in pyproject.toml
# make fuzz   - fuzz reading uploads for FUZZ_S seconds (600); make test runs a minute of it
# make mutate - mutation testing of the request path (docs/mutants.md); make test runs a few of its functions
# make messages - after changing a message: extract them all and merge them into each language's catalog
# make image - build the container image with podman, on a Debian base made here (no registry needed)
# make image-test - build it and run the container tests (tests/system/test_container.py)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed
# A test file on each core (pytest-xdist), its fixtures set up once on that core: make test and make check.
PARALLEL := -n auto --dist loadfile
PEERS_VENV := .venv-peers
PEERS := $(PEERS_VENV)/.installed
MNIST := data/MNIST/raw/t10k-labels-idx1-ubyte
# The page and the errors in each language: a catalog per language, compiled here (docs/languages.md).
CATALOGS := $(patsubst %.po,%.mo,$(wildcard digits/i18n/locales/*/LC_MESSAGES/messages.po))
DEBS := chromium dataset-fashion-mnist fonts-dejavu-core wrk nginx postgresql prometheus

.PHONY: run test check lint claims mutate-smoke mutation train bench soak mutate fuzz data debs catalogs messages clean image compose-images image-test container-debs

run: $(STAMP) $(CATALOGS)
	$(BIN)/python serve.py --host $(HOST) --port $(PORT) $(if $(WORKERS),--workers $(WORKERS))

# The mutation smoke run and the fuzzing go side by side, each output whole: the fuzzer takes a core, and so does
# mutmut's first pass over the tests (297 s one after the other, 247 s side by side).
test: lint $(MNIST) $(CATALOGS) debs compose-images
	$(BIN)/python -m pytest -q $(PARALLEL) --durations=15  # the slowest, so that CI shows where its time goes
	$(MAKE) -j2 --output-sync=target mutate-smoke fuzz FUZZ_S=60 FUZZ_SEED=1

# Coverage-guided fuzzing (bench/fuzz.py): a find is written to out/fuzz/; copied into tests/api/fuzzed/, it is
# a regression input that test_hostile sends to the service.
FUZZ_S ?= 600
FUZZ_SEED ?= 0
fuzz: $(STAMP) $(MNIST) $(CATALOGS)
	$(BIN)/python bench/fuzz.py --seconds $(FUZZ_S) --seed $(FUZZ_SEED)

# Tests that start no process and measure no accuracy (tests/unit, tests/api).
check: lint $(MNIST) $(CATALOGS)
	$(BIN)/python -m pytest -q $(PARALLEL) -m "unit or api"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# Every figure the README states, measured again (python bench/claims.py --fast runs inside make test).
claims: $(STAMP) $(MNIST) $(CATALOGS) debs
	$(BIN)/python bench/claims.py

bench: $(STAMP) $(PEERS) $(MNIST) $(CATALOGS) debs
	$(BIN)/python bench/bench.py

# LitServe and BentoML, the servers bench/ compares this one with, in a venv of their own.
$(PEERS): bench/requirements-peers.txt requirements-serve.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --disable-pip-version-check -q -r bench/requirements-peers.txt
	touch $@

soak: $(STAMP) $(MNIST) $(CATALOGS) debs
	$(BIN)/python bench/soak.py

# The request path, as mutmut names its functions: upload parsing and limits, micro-batching, the body
# limit, prediction ids and the store of corrections, decoding and its bounds, and reading a number.
# mutmut changes one thing at a time in these, and runs only the unit and in-process API tests that reach the
# function changed ([tool.mutmut] in pyproject.toml). Nothing else is mutated, so that the run fits in 20 minutes
# on 2 cores (19 measured); every survivor is accounted for in docs/mutants.md.
MUTATE := digits.service.uploads.x_read_body* digits.service.uploads.x_multipart_form* \
	digits.service.uploads.x_files_in* digits.service.uploads.x_content_type* \
	digits.service.uploads.x_image_upload* digits.service.uploads.x_batch_upload* \
	digits.service.answers.*Answers*micro_batch* digits.service.disconnects.* digits.service.batcher.* \
	digits.service.edge.*BodyLimit*__call__* digits.service.edge.x__too_large* \
	digits.feedback.ids.*PredictionIds*issue* digits.feedback.ids.*PredictionIds*read* \
	digits.feedback.store.*FeedbackStore*record* digits.feedback.ids.x_client_key* digits.imaging.formats.x__png* \
	digits.inference.predictor.*Predictor*prepare_within* digits.inference.predictor.*Predictor*finish* \
	digits.inference.segment.x_read_number*
# make test's smoke run: two small functions of the list, so that a broken setup can't go unseen (a minute or two).
MUTATE_SMOKE := digits.feedback.ids.x_client_key* digits.imaging.formats.x__png*

# One thread per test run: mutmut runs one per core at once. mutmut is installed here, not from
# requirements.txt: only these targets use it.
mutate: $(STAMP) $(MNIST) $(CATALOGS) debs
	$(MAKE) mutation MUTANTS="$(MUTATE)"

mutate-smoke: $(STAMP) $(MNIST) $(CATALOGS)
	$(MAKE) mutation MUTANTS="$(MUTATE_SMOKE)"

mutation:
	$(BIN)/pip install --disable-pip-version-check -q mutmut==3.8.1
	rm -rf mutants && mkdir -p out
	set -f; OMP_NUM_THREADS=1 $(BIN)/mutmut run $(MUTANTS) > out/mutate.log 2>&1 || { tail -50 out/mutate.log; exit 1; }
	@echo "Not killed (docs/mutants.md says why):"
	@$(BIN)/mutmut results | grep -v ": not checked$$" || true
	@$(BIN)/mutmut results --all true | awk -F': ' '$$2 != "not checked" { n++ } $$2 == "killed" { k++ } \
	  END { printf "mutation: %d of %d mutants killed (%.1f%%)\n", k, n, 100 * k / n; if (n == 0) exit 1 }'

train: $(STAMP)
	$(BIN)/python train.py

data: $(MNIST)

catalogs: $(CATALOGS)

%.mo: %.po | $(STAMP)
	$(BIN)/pybabel -q compile -i $< -o $@

# The messages of the package and the templates ([tool.babel] in pyproject.toml) into every catalog: new ones
# come untranslated and changed ones fuzzy, and tests/unit/test_languages.py fails until each is translated.
messages: $(STAMP)
	mkdir -p out
	$(BIN)/pybabel -q extract -F pyproject.toml --no-location -o out/messages.pot .
	$(BIN)/pybabel -q update -i out/messages.pot -d digits/i18n/locales -w 120 --ignore-obsolete

$(STAMP): requirements.txt requirements-serve.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(MNIST): | $(STAMP)
	$(BIN)/python -m digits.training.dataset

# Debian packages the tests use: Chromium for the browser tests (Debian's, where Playwright would download
# its own), Fashion-MNIST and fonts for the not-a-digit measurements, wrk for bench/, and
# nginx and PostgreSQL for the replicas behind a load balancer (the tests start their own, on loopback).
debs:
	@dpkg -s $(DEBS) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS); }

# --- the container, built and run here with podman ---
# Without a container registry, the base is Debian bookworm made by mmdebstrap from Debian's mirror, with a
# venv in /usr/local (python and pip on PATH, as in python:3.11-slim). The Dockerfile's default base
# (python:3.11-slim) is for everyone else. deploy/podman/containers.conf holds the two settings podman needs here.
IMAGE ?= localhost/digits:latest
BASE_IMAGE ?= localhost/digits-base:bookworm
CONTAINER_DEBS := podman buildah runc slirp4netns uidmap mmdebstrap
export CONTAINERS_CONF := $(CURDIR)/deploy/podman/containers.conf
# pip in the build reaches the index the host's pip does: the host's network, CA bundle and pip settings.
BUILD_MOUNTS := -v /etc/ssl/certs:/etc/ssl/certs:ro $(foreach f,/etc/pip.conf /etc/xdg/pip,$(if $(wildcard $(f)),-v $(f):$(f):ro))

container-debs:
	@dpkg -s $(CONTAINER_DEBS) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CONTAINER_DEBS); }

image: container-debs
	podman image exists $(BASE_IMAGE) || { mkdir -p out && \
	  mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
	    --customize-hook='chroot "$$1" python3 -m venv /usr/local' \
	    bookworm out/base.tar "deb http://deb.debian.org/debian bookworm main" && \
	  podman import out/base.tar $(BASE_IMAGE) && rm out/base.tar; }
	podman build --format docker --network=host $(BUILD_MOUNTS) \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

# Stand-ins for the nginx and postgres images that deploy/compose.yaml names, from the same Debian base.
compose-images: image
	for s in nginx postgres; do \
	  podman build --format docker --network=host --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	    -f deploy/podman/$$s.Containerfile -t localhost/digits-$$s:latest deploy/podman || exit 1; done

image-test: $(STAMP) $(MNIST) compose-images
	$(BIN)/python -m pytest -q tests/system/test_container.py

clean:
	rm -rf $(VENV) $(PEERS_VENV) data/MNIST out mutants reports/latest
