# The digit service in a container: CPU-only torch, a non-root user, /healthz as the health check.
#
#   docker build -t digits .
#   docker run -p 8000:8000 -e PREDICTION_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" digits
#
# One worker per CPU the container may use (WORKERS to choose). Not built on this project's machines,
# which can't pull base images: see "Deployment" in the README for what was checked.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements-serve.txt .
# torch from PyTorch's CPU index first: about 200 MB where PyPI's default build brings 3 GB of CUDA.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 \
 && pip install -r requirements-serve.txt

COPY main.py batcher.py edge.py explain.py formats.py model.py predict.py preprocess.py segment.py feedback.py observability.py serve.py ./
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
