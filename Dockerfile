# The serving image for every torchship model: Debian's Python 3.11 + Java 17, the serving runtime from a
# prepared wheelhouse (no network for Python packages), TorchServe hardened, tini + an entrypoint that
# stops TorchServe on SIGTERM, a numeric non-root user, a read-only root filesystem.
#
# `torchship image SPEC` prepares the build context and builds it; by hand, with that context:
#   docker build --build-arg MODEL_NAME=minilm-embeddings --build-arg MAR_SHA256=... [--build-arg BASE_IMAGE=...] CONTEXT
# Context:  Dockerfile  requirements/serve.txt  wheels/*.whl  bin/  model/config.properties
#           model/model-store/<MODEL_NAME>.mar
# Stages are ordered for the layer cache: only the last one changes from model to model.
ARG BASE_IMAGE=debian:bookworm-slim

# --- the OS: Python 3.11, the JRE TorchServe's frontend runs on, tini; the user; how the image starts -----
# checkov:skip=CKV_DOCKER_7: the base is a build argument (pin it there, ideally by digest); the other FROMs are stages of this file
FROM ${BASE_IMAGE} AS runtime-os
# Not version-pinned on purpose (hadolint DL3008): bookworm's security updates replace package versions on
# the mirror, so exact pins would break the build; the Python runtime, which decides the answers, is pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 # A numeric UID/GID >= 10000: Kubernetes can verify a number as non-root, a name it cannot.
 && groupadd --gid 10001 torchship \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin torchship \
 && mkdir -p /var/log/torchship && chown 10001:10001 /var/log/torchship
# Writable paths: /tmp (TMPDIR: pid file, the config with the ports, the extracted archive) and
# /var/log/torchship (logs, metrics). Everything else may be read-only.
ENV PATH=/opt/torchship/venv/bin:/opt/torchship/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TORCHSHIP_BIND_ADDRESS=0.0.0.0 \
    TORCHSHIP_INFERENCE_PORT=8080 \
    TORCHSHIP_MANAGEMENT_PORT=8081 \
    TORCHSHIP_METRICS_PORT=8082 \
    TORCHSHIP_GRPC_INFERENCE_PORT=7070 \
    TORCHSHIP_GRPC_MANAGEMENT_PORT=7071 \
    TMPDIR=/tmp \
    HOME=/tmp \
    LOG_LOCATION=/var/log/torchship \
    METRICS_LOCATION=/var/log/torchship \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1
WORKDIR /tmp
# Only the inference and metrics ports serve outside the pod; management and gRPC stay on 127.0.0.1.
EXPOSE 8080 8082
STOPSIGNAL SIGTERM
# tini is PID 1 (reaps TorchServe's workers, forwards signals); the entrypoint stops TorchServe on SIGTERM.
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/torchship/bin/entrypoint"]

# --- the serving runtime, installed offline from the wheelhouse; the wheels stay out of the image --------
FROM runtime-os AS venv
COPY requirements/serve.txt /opt/torchship/serve.txt
COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/torchship/venv \
 && /opt/torchship/venv/bin/pip install --no-cache-dir --no-index --no-deps --find-links /tmp/wheels \
      -r /opt/torchship/serve.txt \
 && /opt/torchship/venv/bin/pip uninstall -y -q pip

# --- everything but the model --------------------------------------------------------------------------
FROM runtime-os AS serving
COPY --from=venv /opt/torchship/venv /opt/torchship/venv
COPY bin/ /opt/torchship/bin/
USER 10001:10001
# For docker/podman runs; Kubernetes ignores HEALTHCHECK and uses the same probe as an exec probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s CMD ["/opt/torchship/bin/probe", "live"]

# --- the model: its verified .mar and the TorchServe config rendered from its spec ---------------------
FROM serving
# One ARG and one LABEL instruction: every instruction is a layer commit, slow on vfs-backed builders.
ARG MODEL_NAME MODEL_VERSION=unknown MAR_SHA256=unknown GATE_VERDICT=unknown TORCHSHIP_VERSION=unknown GIT_COMMIT=unknown
COPY model/ /opt/torchship/
ENV TORCHSHIP_MODEL_NAME=${MODEL_NAME}
# torchship checks after the build that these equal torchship/image/labels.py's. No secrets here.
LABEL org.opencontainers.image.title="${MODEL_NAME}" \
      org.opencontainers.image.version="${MODEL_VERSION}" \
      org.opencontainers.image.description="TorchServe 0.12.0 serving ${MODEL_NAME} ${MODEL_VERSION}, built by torchship" \
      io.torchship.model.name="${MODEL_NAME}" \
      io.torchship.model.version="${MODEL_VERSION}" \
      io.torchship.mar.sha256="${MAR_SHA256}" \
      io.torchship.gate.verdict="${GATE_VERDICT}" \
      io.torchship.version="${TORCHSHIP_VERSION}" \
      io.torchship.uid="10001" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
