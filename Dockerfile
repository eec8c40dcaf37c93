# syntax=docker/dockerfile:1
# The servicegraph operator: `docker build -t REGISTRY/servicegraph-operator:VERSION .`
# Runs as an unprivileged user on a read-only root filesystem (Pod Security "restricted");
# writes nothing but temporary files, under /tmp (an emptyDir in the Helm chart).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtual environment with the operator and its dependencies -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the pinned ranges in pyproject.toml: this layer stays cached until
# they change. An empty package stands in for the source, which comes next.
COPY pyproject.toml README.md ./
RUN mkdir -p operator/servicegraph \
    && touch operator/servicegraph/__init__.py \
    && pip install . \
    && pip uninstall --yes servicegraph-operator
COPY operator/ operator/
# Bytecode is compiled here: the root filesystem is read-only at run time.
RUN pip install --no-deps . \
    && python -m compileall -q /opt/venv

# --- runtime: the environment alone, no compilers, no pip cache -----------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="servicegraph-operator" \
      org.opencontainers.image.description="Keeps the service dependency graph an SLO engine needs" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 servicegraph \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin servicegraph
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so that the kubelet can check runAsNonRoot.
USER 10001:10001
WORKDIR /tmp
# 8000: Prometheus metrics; 8080: Kopf's liveness endpoint (--liveness).
EXPOSE 8000 8080
ENTRYPOINT ["servicegraph", "run"]
