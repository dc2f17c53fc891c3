# Qianmian image: the `recsys` CLI (publish, serve, train, synth, caps) and an MLflow server with
# PostgreSQL support. Build: docker build -t qianmian .   Run: see docker-compose.yml.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY features ./features
COPY recsys ./recsys
COPY training ./training
COPY serving ./serving
COPY qianmian ./qianmian
COPY worlds ./worlds
COPY simulation ./simulation
COPY publishing ./publishing
# Wheels for the package and every pinned dependency (LightFM compiles here, with OpenMP).
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt . "psycopg2-binary==2.9.13"

FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 qianmian \
    && mkdir -p /var/lib/qianmian /data \
    && chown qianmian /var/lib/qianmian /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels qianmian psycopg2-binary \
    && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    RECSYS_HOME=/var/lib/qianmian
USER qianmian
WORKDIR /var/lib/qianmian
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["recsys", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
