# wikimem-memory image: documents, chunks and vectors on Qdrant Edge (WIKIMEM_DATA=/data: mount a volume there) or a
# Qdrant server (WIKIMEM_MEMORY_BACKEND=qdrant, QDRANT_URL). No models. Built by deploy/docker/build.sh (context: the
# repository root). Layers, least to most often changed: third-party deps (from pyproject.toml + constraints.txt),
# settings, then the source: contract + common, and this service last, so a code change only re-copies and re-installs
# source.
ARG WIKIMEM_BASE=wikimem/base:latest
FROM ${WIKIMEM_BASE}
USER root
ARG PIP_CERT=/opt/wikimem/build-ca/bundle.pem
COPY services/memory/pyproject.toml /opt/wikimem/build/services/memory/
RUN cd /opt/wikimem/build \
 && python requirements.py . wikimem-memory > memory.txt \
 && pip install -q -c constraints.txt -r memory.txt \
 && mkdir -p /data && chown wikimem:wikimem /data
ENV WIKIMEM_SERVICE=memory WIKIMEM_LISTEN=0.0.0.0:50053 WIKIMEM_DATA=/data
EXPOSE 50053
CMD ["python", "-m", "wikimem_memory"]
COPY deploy/docker/healthcheck.py /opt/wikimem/healthcheck.py
COPY protos/python /opt/wikimem/src/contract
COPY services/common /opt/wikimem/src/common
RUN cd /opt/wikimem/src && pip install -q --no-deps --no-build-isolation ./contract ./common && rm -rf /opt/wikimem/src
COPY services/memory /opt/wikimem/src/memory
RUN cd /opt/wikimem/src && pip install -q --no-deps --no-build-isolation ./memory && rm -rf /opt/wikimem/src
USER wikimem
