# The aietl workers and gateway (one image, the command picks the process). Used by docker-compose.yml;
# the servers (Kafka, Redis, ClickHouse, PostgreSQL, Qdrant) run in their own containers.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIETL_STATE_DIR=/data/aietl

WORKDIR /app

# Sources only (the local .aietl state folder and virtualenvs stay out of the image).
# README.m[d]: copied when present (pyproject.toml names it as the readme).
COPY pyproject.toml README.m[d] ./
COPY schemas_avro ./schemas_avro
COPY topology ./topology
COPY infra ./infra
COPY services ./services
COPY gateway_api ./gateway_api

# Editable install: the code runs from /app, so data files (Avro schemas, ClickHouse migrations,
# topology.yaml) are read from the source tree.
RUN pip install -e . \
 && useradd --create-home --uid 10001 aietl \
 && mkdir -p /data/aietl \
 && chown -R aietl:aietl /data

USER aietl
EXPOSE 8000
ENTRYPOINT ["aietl"]
CMD ["--help"]
