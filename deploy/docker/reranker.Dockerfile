# wikimem-reranker image: cross-encoder reranking (ONNX Runtime) with the shipped reranker model. Built by
# deploy/docker/build.sh (context: the repository root). Layers, least to most often changed: third-party deps (from
# pyproject.toml + constraints.txt), model, settings, then the source: contract + common, and this service last, so a
# code change only re-copies and re-installs source.
ARG WIKIMEM_BASE=wikimem/base-onnx:latest
FROM ${WIKIMEM_BASE}
USER root
ARG PIP_CERT=/opt/wikimem/build-ca/bundle.pem
COPY services/reranker/pyproject.toml /opt/wikimem/build/services/reranker/
RUN cd /opt/wikimem/build \
 && python requirements.py . wikimem-reranker > reranker.txt \
 && pip install -q -c constraints.txt -r reranker.txt
COPY models/reranker /opt/wikimem/models/reranker
ENV WIKIMEM_SERVICE=reranker WIKIMEM_LISTEN=0.0.0.0:50054 WIKIMEM_MODELS=/opt/wikimem/models
EXPOSE 50054
CMD ["python", "-m", "wikimem_reranker"]
COPY deploy/docker/healthcheck.py /opt/wikimem/healthcheck.py
COPY protos/python /opt/wikimem/src/contract
COPY services/common /opt/wikimem/src/common
RUN cd /opt/wikimem/src && pip install -q --no-deps --no-build-isolation ./contract ./common && rm -rf /opt/wikimem/src
COPY services/reranker /opt/wikimem/src/reranker
RUN cd /opt/wikimem/src && pip install -q --no-deps --no-build-isolation ./reranker && rm -rf /opt/wikimem/src
USER wikimem
