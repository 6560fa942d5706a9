# syntax=docker/dockerfile:1
# The one certdepot image: `certdepot repository serve` and `certdepot operator run`.
#
#   docker build -t certdepot:0.1.0 .
#   podman build -t certdepot:0.1.0 .
#
# Build arguments fill the OCI labels: --build-arg VERSION=... REVISION=$(git rev-parse HEAD)
# CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: resolve and install every dependency into a virtualenv ----------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
# A build behind a TLS-intercepting proxy (`make image` on a sandboxed machine) passes the
# PEM of the CAs the host added to its trust store; pip of this stage trusts them too. The
# file stays in this stage: the runtime stage copies /opt/certdepot only.
ARG EXTRA_CA_CERTS=""
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
      cat /etc/ssl/certs/ca-certificates.crt > /etc/pip-ca.pem \
      && printf '%s\n' "$EXTRA_CA_CERTS" >> /etc/pip-ca.pem \
      && printf '[global]\ncert = /etc/pip-ca.pem\n' > /etc/pip.conf; \
    fi \
 && python -m venv /opt/certdepot

# Dependencies first, from the pinned constraints, as wheels only: nothing is compiled, so
# neither stage needs a compiler. This layer depends on pyproject.toml and the pins only,
# so a source change rebuilds just the small layer below it.
COPY constraints.txt pyproject.toml README.md ./
RUN /opt/certdepot/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && /opt/certdepot/bin/pip install --only-binary=:all: -c constraints.txt -r /tmp/requirements.txt
COPY operator/ operator/
RUN /opt/certdepot/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/certdepot/bin/pip install --only-binary=:all: -c constraints.txt /wheels/certdepot-*.whl \
 && /opt/certdepot/bin/pip uninstall --yes pip \
 && /opt/certdepot/bin/python -m compileall -q /opt/certdepot/lib

# ---- runtime: the virtualenv on the same slim base, no build tools ----------------------
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="certdepot" \
      org.opencontainers.image.description="Distribute TLS certificates to Kubernetes pods over ACME: a central repository and a kopf operator." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# A fixed, unprivileged identity; the Helm chart runs as the same UID/GID (10001).
RUN groupadd --system --gid 10001 certdepot \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin certdepot \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/certdepot

COPY --from=build /opt/certdepot /opt/certdepot

# Bytecode is precompiled above; the root filesystem is read-only in the chart.
ENV PATH=/opt/certdepot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
WORKDIR /var/lib/certdepot
# Repository HTTPS and http-01; operator metrics and health (the chart's default ports).
EXPOSE 8443 8080 9402 9403
ENTRYPOINT ["/opt/certdepot/bin/certdepot"]
CMD ["--help"]
