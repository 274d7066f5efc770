# wikimem-embedder image: sentence embeddings (ONNX Runtime) with the shipped embedder model. Built by
# deploy/docker/build.sh (context: the repository root). Layers, least to most often changed: third-party deps (from
# pyproject.toml + constraints.txt), model, settings, then the source: contract + common, and this service last, so a
# code change only re-copies and re-installs source.
ARG WIKIMEM_BASE=wikimem/base-onnx:latest
FROM ${WIKIMEM_BASE}
USER root
ARG PIP_CERT=/opt/wikimem/build-ca/bundle.pem
COPY services/embedder/pyproject.toml /opt/wikimem/build/services/embedder/
RUN cd /opt/wikimem/build \
 && python requirements.py . wikimem-embedder > embedder.txt \
 && pip install -q -c constraints.txt -r embedder.txt
COPY models/embedder /opt/wikimem/models/embedder
ENV WIKIMEM_SERVICE=embedder WIKIMEM_LISTEN=0.0.0.0:50052 WIKIMEM_MODELS=/opt/wikimem/models
EXPOSE 50052
CMD ["python", "-m", "wikimem_embedder"]
COPY deploy/docker/healthcheck.py /opt/wikimem/healthcheck.py
COPY protos/python /opt/wikimem/src/contract
COPY services/common /opt/wikimem/src/common
RUN cd /opt/wikimem/src && pip install -q --no-deps --no-build-isolation ./contract ./common && rm -rf /opt/wikimem/src
COPY services/embedder /opt/wikimem/src/embedder
RUN cd /opt/wikimem/src && pip install -q --no-deps --no-build-isolation ./embedder && rm -rf /opt/wikimem/src
USER wikimem
