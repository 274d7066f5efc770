# wikimem-reader image: extractive reader (ONNX Runtime) with the shipped reader model (fp32, the default, and int8:
# WIKIMEM_READER_VARIANT=int8). Built by deploy/docker/build.sh (context: the repository root). Layers, least to most
# often changed: third-party deps (from pyproject.toml + constraints.txt), model, settings, then the source: contract
# + common, and this service last, so a code change only re-copies and re-installs source.
ARG WIKIMEM_BASE=wikimem/base-onnx:latest
FROM ${WIKIMEM_BASE}
USER root
ARG PIP_CERT=/opt/wikimem/build-ca/bundle.pem
COPY services/reader/pyproject.toml /opt/wikimem/build/services/reader/
RUN cd /opt/wikimem/build \
 && python requirements.py . wikimem-reader > reader.txt \
 && pip install -q -c constraints.txt -r reader.txt
COPY models/reader /opt/wikimem/models/reader
ENV WIKIMEM_SERVICE=reader WIKIMEM_LISTEN=0.0.0.0:50055 WIKIMEM_MODELS=/opt/wikimem/models
EXPOSE 50055
CMD ["python", "-m", "wikimem_reader"]
COPY deploy/docker/healthcheck.py /opt/wikimem/healthcheck.py
COPY protos/python /opt/wikimem/src/contract
COPY services/common /opt/wikimem/src/common
RUN cd /opt/wikimem/src && pip install -q --no-deps --no-build-isolation ./contract ./common && rm -rf /opt/wikimem/src
COPY services/reader /opt/wikimem/src/reader
RUN cd /opt/wikimem/src && pip install -q --no-deps --no-build-isolation ./reader && rm -rf /opt/wikimem/src
USER wikimem
