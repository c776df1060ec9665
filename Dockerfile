# talonflow image: the receiver by default; the bytewax flows run from the same image with
# `python -m bytewax.run flows.<name>:flow`. Config is mounted at /etc/talonflow/talonflow.yaml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /opt/talonflow/src

# Dependencies first, against stub packages, so editing the code does not reinstall them.
COPY pyproject.toml README.md constraints.txt ./
RUN set -eux; \
    for pkg in talonflow receiver schemas sinks flows; do mkdir -p "$pkg" && touch "$pkg/__init__.py"; done; \
    pip install --no-cache-dir -c constraints.txt .; \
    rm -rf build ./*.egg-info talonflow receiver schemas sinks flows

# Then the project itself (its dependencies are already in place).
COPY talonflow ./talonflow
COPY receiver ./receiver
COPY schemas ./schemas
COPY sinks ./sinks
COPY flows ./flows
COPY alerts.yaml /etc/talonflow/alerts.yaml
RUN set -eux; \
    pip install --no-cache-dir --no-deps --force-reinstall -c constraints.txt .; \
    rm -rf build ./*.egg-info

RUN set -eux; \
    groupadd --system --gid 10001 talonflow; \
    useradd --system --uid 10001 --gid talonflow --home-dir /var/lib/talonflow --no-create-home \
        --shell /usr/sbin/nologin talonflow; \
    mkdir -p /etc/talonflow /var/lib/talonflow/state /var/lib/talonflow/data; \
    chown -R talonflow:talonflow /var/lib/talonflow

USER talonflow
# Outside the source tree, so `python -m receiver` imports the installed package.
WORKDIR /var/lib/talonflow

# OTLP/gRPC, OTLP/HTTP, ops (/healthz, /readyz, /metrics)
EXPOSE 4317 4318 13133

CMD ["python", "-m", "receiver", "--config", "/etc/talonflow/talonflow.yaml"]
