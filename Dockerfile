# The digit service in a container: requirements-serve.txt alone (no torch: serving runs the network in numpy),
# a non-root user, /healthz as the health check.
#
#   docker build -t digits .
#   docker run -p 8000:8000 -e PREDICTION_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" digits
#
# One worker per CPU the container may use (WORKERS to choose). Where Docker Hub can't be reached, the build
# argument names what can: `make image` builds on a Debian bookworm base made by mmdebstrap (see "Deployment"
# in docs/operations.md).
#   BASE_IMAGE   an image with Python 3.11, and python and pip on PATH (default: python:3.11-slim)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements-serve.txt .
RUN pip install -r requirements-serve.txt

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
