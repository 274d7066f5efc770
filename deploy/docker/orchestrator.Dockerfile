# wikimem-orchestrator image: the public Rag API (embed, retrieve, rerank, read; Redis caches). No models. Built by
# deploy/docker/build.sh (context: the repository root). Layers, least to most often changed: third-party deps (from
# pyproject.toml + constraints.txt), settings, then the source: contract + common, and this service last, so a code
# change only re-copies and re-installs source.
ARG WIKIMEM_BASE=wikimem/base:latest
FROM ${WIKIMEM_BASE}
USER root
ARG PIP_CERT=/opt/wikimem/build-ca/bundle.pem
COPY services/orchestrator/pyproject.toml /opt/wikimem/build/services/orchestrator/
RUN cd /opt/wikimem/build \
 && python requirements.py . wikimem-orchestrator > orchestrator.txt \
 && pip install -q -c constraints.txt -r orchestrator.txt
ENV WIKIMEM_SERVICE=orchestrator WIKIMEM_LISTEN=0.0.0.0:50051
EXPOSE 50051
CMD ["python", "-m", "wikimem_orchestrator"]
COPY deploy/docker/healthcheck.py /opt/wikimem/healthcheck.py
COPY protos/python /opt/wikimem/src/contract
COPY services/common /opt/wikimem/src/common
RUN cd /opt/wikimem/src && pip install -q --no-deps --no-build-isolation ./contract ./common && rm -rf /opt/wikimem/src
COPY services/orchestrator /opt/wikimem/src/orchestrator
RUN cd /opt/wikimem/src && pip install -q --no-deps --no-build-isolation ./orchestrator && rm -rf /opt/wikimem/src
USER wikimem
