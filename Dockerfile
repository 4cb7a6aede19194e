# One image for both roles: `webhook-operator controller` (the operator) and
# `webhook-operator delivery` (the delivery service); the Helm chart picks the command.
#
# Untested here: the machines this project is developed on have no container engine, so
# this file is kept deliberately plain (one stage, no build tools: every dependency ships
# manylinux wheels).
#
#   docker build -t ghcr.io/webhook-operator/webhook-operator:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The chart runs pods as 65532 with a read-only root filesystem; a named user keeps tools
# that look the uid up (and `ps`) readable.
RUN groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin nonroot

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip install . && rm -rf /src

WORKDIR /
USER 65532:65532
EXPOSE 8080 8081 8090 9090
ENTRYPOINT ["webhook-operator"]
CMD ["--help"]
