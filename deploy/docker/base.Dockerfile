# wikimem base images (built by deploy/docker/build.sh; the build context is the repository root):
#   --target base  wikimem/base       python venv with the contract's and wikimem-common's third-party deps
#   --target onnx  wikimem/base-onnx  + onnxruntime and tokenizers (wikimem-common[onnx]) for the model services
# BASE_IMAGE: python:3.11-slim, or a Debian bookworm + python3 image made by make-base.sh where no registry is
# reachable. Either way: a venv in /opt/venv (root-owned), an unprivileged user `wikimem` (uid/gid 10001).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    WIKIMEM_LOG_FORMAT=json
RUN groupadd --system --gid 10001 wikimem \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/wikimem --shell /usr/sbin/nologin wikimem \
 && python3 -m venv /opt/venv
# CA certificates of the build machine (deploy/docker/ca/, made by build.sh; often empty: run build.sh), for pip
# during the build only: PIP_CERT below is a build argument, so neither the system trust store nor the runtime
# environment of the images trusts them.
COPY deploy/docker/ca/ /opt/wikimem/build-ca/
RUN test -s /etc/ssl/certs/ca-certificates.crt || { echo "no CA bundle in the base image (ca-certificates)"; exit 1; } \
 && cat /etc/ssl/certs/ca-certificates.crt > /opt/wikimem/build-ca/bundle.pem \
 && for f in /opt/wikimem/build-ca/*.crt; do if [ -f "$f" ]; then cat "$f" >> /opt/wikimem/build-ca/bundle.pem; fi; done
ARG PIP_CERT=/opt/wikimem/build-ca/bundle.pem
# Dependencies before source: only the pyproject files and the pinned versions are inputs of this layer.
COPY constraints.txt deploy/docker/build-requirements.txt deploy/docker/requirements.py /opt/wikimem/build/
COPY protos/python/pyproject.toml /opt/wikimem/build/protos/python/
COPY services/common/pyproject.toml /opt/wikimem/build/services/common/
RUN cd /opt/wikimem/build \
 && python requirements.py . wikimem-common > common.txt \
 && pip install -q -c constraints.txt -r build-requirements.txt -r common.txt
# Prometheus /metrics of every service (wikimem_common.metrics); not published by docker-compose.yml.
ENV WIKIMEM_METRICS_ADDR=0.0.0.0:9464
EXPOSE 9464
# gRPC health (grpc.health.v1) on $WIKIMEM_LISTEN, which every service image sets; the service images copy the script
# with their source, so changing it does not rebuild the dependency layers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["python", "/opt/wikimem/healthcheck.py"]
WORKDIR /home/wikimem
USER wikimem

FROM base AS onnx
USER root
ARG PIP_CERT=/opt/wikimem/build-ca/bundle.pem
RUN cd /opt/wikimem/build \
 && python requirements.py . 'wikimem-common[onnx]' > onnx.txt \
 && pip install -q -c constraints.txt -r onnx.txt
USER wikimem
