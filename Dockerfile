# KMM Confidential Records Service. Not built on the development machine (no Docker
# engine there); tests/test_deploy.py checks this file and docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KMM_ENV=production

# An unprivileged account that owns nothing it runs.
RUN groupadd --system kmm \
    && useradd --system --gid kmm --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kmm

# Installed as a wheel (the migrations ship inside the package), then the sources go: the
# code lives in site-packages, owned by root and read-only to the service account.
WORKDIR /tmp/kmm-build
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install . && rm -rf /tmp/kmm-build

WORKDIR /srv/kmm
# Worker processes for `kmm serve` (docker run -e WEB_CONCURRENCY=4 for more).
ENV WEB_CONCURRENCY=2
USER kmm
EXPOSE 8000

# python:3.11-slim has no curl; the standard library does the check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# `serve` migrates first (under a lock, so replicas starting together take turns), then runs
# uvicorn with WEB_CONCURRENCY workers. Secrets and DATABASE_URL come from the environment,
# or from files named by KMM_JWT_SECRET_FILE, KMM_MASTER_KEYS_FILE, DATABASE_URL_FILE and
# KMM_METRICS_TOKEN_FILE (Docker secrets); with KMM_ENV=production a missing secret stops it
# with a clear message.
CMD ["kmm", "serve", "--host", "0.0.0.0", "--port", "8000"]
