# The digit service in a container: CPU-only torch, a non-root user, /healthz as the health check.
#
#   docker build -t digits .
#   docker run -p 8000:8000 -e PREDICTION_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" digits
#
# One worker per CPU the container may use (WORKERS to choose). Where Docker Hub and PyTorch's index can't be
# reached, the build arguments name what can: `make image` builds on a Debian bookworm base made by
# mmdebstrap, with a CPU-only torch wheel from local disk (see "Deployment" in the README).
#   BASE_IMAGE   an image with Python 3.11, and python and pip on PATH (default: python:3.11-slim)
#   TORCH        torch, as a requirement or a wheel's path (default: torch==2.14.1)
#   TORCH_INDEX  the index that TORCH comes from; empty for pip's own (default: PyTorch's CPU index)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG TORCH=torch==2.14.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements-serve.txt .
# torch from PyTorch's CPU index first: about 200 MB where PyPI's default build brings 3 GB of CUDA. Then the
# rest, without requirements-serve.txt's torch line, so that a TORCH of another version stays.
RUN pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH" \
 && grep -v '^torch==' requirements-serve.txt > /tmp/rest.txt \
 && pip install -r /tmp/rest.txt \
 && rm /tmp/rest.txt

# The root's scripts and the package, whole: .dockerignore keeps out what the service doesn't run.
COPY *.py ./
COPY digits/ digits/
# The languages' catalogs, compiled from their .po (make catalogs does the same outside)
RUN pybabel -q compile -d digits/i18n/locales
COPY templates/ templates/
COPY static/ static/
COPY weights/ weights/
# data/ holds the per-machine secret and SQLite database when PREDICTION_SECRET and DATABASE_URL are unset.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin digits \
 && mkdir data && chown digits data
USER digits

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["python", "serve.py", "--host", "0.0.0.0", "--port", "8000"]
