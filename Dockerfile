# eneuronet BIDS App.  CPU build:   docker build -t eneuronet .
#                      CUDA build:  docker build --build-arg TORCH_VARIANT=cu128 -t eneuronet:cuda .
# Runs offline: the weights are in the package and the templates are baked in below.
ARG DEBIAN_RELEASE=bookworm
FROM debian:${DEBIAN_RELEASE}-slim

# "cpu", or a PyTorch CUDA wheel tag such as "cu128" (the wheels bring the CUDA runtime; the
# host needs only the NVIDIA driver and `docker run --gpus all`).
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
# For builds behind a TLS-intercepting proxy or from a local wheel folder
# (scripts/verify-container.sh); empty by default, and pip ignores empty values.
ARG PIP_CERT=""
ARG PIP_FIND_LINKS=""
# A TemplateFlow home to copy templates from instead of downloading them (the local build).
ARG TEMPLATEFLOW_SEED=/tmp/templateflow-seed
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="eneuronet" \
      org.opencontainers.image.description="BIDS App: whole-brain DKT31 + aseg parcellation of T1w MRI with E-NeuroNet" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/eneuronet/eneuronet" \
      org.opencontainers.image.url="https://github.com/eneuronet/eneuronet" \
      org.opencontainers.image.licenses="Apache-2.0 AND CC-BY-NC-SA-3.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:${DEBIAN_RELEASE}-slim"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# DL3008 (pin apt versions) is ignored on purpose: Debian stable only ships security fixes
# within a release, and exact pins break rebuilds as soon as the archive moves on.

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv "$VIRTUAL_ENV" \
 && pip install --extra-index-url "$TORCH_INDEX_URL" torch==2.13.0

# Dependencies first (a layer that survives code changes), then the package itself.
COPY pyproject.toml README.md /src/
COPY eneuronet_bids/__init__.py /src/eneuronet_bids/__init__.py
RUN pip install /src && pip uninstall -y eneuronet
COPY eneuronet_bids /src/eneuronet_bids
RUN pip install --no-deps /src && rm -rf /src

# Templates, fetched once with TemplateFlow's API at build time; read-only at run time.
ENV TEMPLATEFLOW_HOME=/opt/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=0
RUN if [ -d "$TEMPLATEFLOW_SEED" ]; then python -m eneuronet_bids.templates "$TEMPLATEFLOW_SEED"; \
    else python -m eneuronet_bids.templates; fi \
 && chmod -R a+rX "$TEMPLATEFLOW_HOME"

# Any user may run the image (docker run --user "$(id -u):$(id -g)"); nothing needs a writable
# HOME: the app points every cache (matplotlib, torch, deno) at its work directory, by default
# a folder under /tmp (mount a tmpfs there with --read-only). /bids, /out and /work are the
# conventional mount points (Singularity cannot create them on a read-only image).
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin eneuronet \
 && mkdir /bids /out /work
ENV HOME=/home/eneuronet \
    MPLBACKEND=Agg \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENEURONET_CONTAINER_TYPE=docker \
    ENEURONET_CONTAINER_IMAGE=eneuronet/eneuronet:${VERSION}
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["eneuronet"]
CMD ["--help"]
