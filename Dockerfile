# The central services of hpo-relay (and the hpo / hpo-edge commands) in one image.
#   docker build -t hpo-relay .
#   docker run --env-file hpo.env hpo-relay run api        # or steering, jobbuilder, ...
# deploy/compose/ and deploy/helm/ run one container per service from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# bubblewrap: the sandbox steering runs users' steering programs in.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/hpo-relay hpo

WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY edge ./edge
COPY client ./client
RUN pip install ".[mlflow]"

USER hpo
WORKDIR /var/lib/hpo-relay
ENV HPO_HOME=/var/lib/hpo-relay \
    HPO_API_HOST=0.0.0.0 \
    HPO_MONITOR_HOST=0.0.0.0 \
    HPO_OPS_HOST=0.0.0.0 \
    HPO_OPS_PORT=9100

EXPOSE 8000 8001 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/readyz', timeout=4)"]
ENTRYPOINT ["hpo-services"]
CMD ["run", "all"]
