# syntax=docker/dockerfile:1
# The servicegraph operator: `docker build -t REGISTRY/servicegraph-operator:VERSION .`
# Runs as an unprivileged user on a read-only root filesystem (Pod Security "restricted");
# writes nothing but temporary files, under /tmp (an emptyDir in the Helm chart).

# Any Debian-based image with python3 (3.11) and its venv module; `make image OFFLINE=1` passes
# one made from Debian's packages, for machines that reach no registry.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The package's version (pyproject.toml; a test keeps them equal), for the image's labels.
ARG VERSION=0.1.0

# --- build: a virtual environment with the operator and its dependencies -------------------
FROM ${PYTHON_IMAGE} AS build
# Extra options for pip, e.g. "--no-index --find-links /wheels" for wheels mounted into a
# build that reaches no index.
ARG PIP_INSTALL_OPTIONS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the pinned ranges in pyproject.toml: this layer stays cached until
# they change. An empty package stands in for the source, which comes next; its build/ goes
# too, or setuptools would install the empty package again (the copied source is older).
COPY pyproject.toml README.md ./
# The options are split into words on purpose.
# hadolint ignore=SC2086
RUN mkdir -p operator/servicegraph \
    && touch operator/servicegraph/__init__.py \
    && pip install ${PIP_INSTALL_OPTIONS} . \
    && pip uninstall --yes servicegraph-operator \
    && rm -rf build operator
COPY operator/ operator/
# pip and setuptools go once the package is in: nothing installs at run time. Bytecode is
# compiled here, since the root filesystem is read-only at run time.
# hadolint ignore=SC2086
RUN pip install ${PIP_INSTALL_OPTIONS} --no-deps . \
    && python -m pip uninstall --yes pip setuptools \
    && python -m compileall -q /opt/venv

# --- runtime: the environment alone, no compilers, no pip cache -----------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION
LABEL org.opencontainers.image.title="servicegraph-operator" \
      org.opencontainers.image.description="Keeps the service dependency graph an SLO engine needs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/slo-engine/servicegraph-operator" \
      org.opencontainers.image.url="https://github.com/slo-engine/servicegraph-operator" \
      org.opencontainers.image.documentation="https://github.com/slo-engine/servicegraph-operator#readme"
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
# Kopf stops its handlers and the snapshot writes in progress on SIGTERM, what the kubelet
# sends first. No HEALTHCHECK: Kubernetes probes the liveness endpoint itself.
STOPSIGNAL SIGTERM
ENTRYPOINT ["servicegraph", "run"]
