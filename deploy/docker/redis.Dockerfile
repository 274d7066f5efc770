# Redis for the compose stack where the public `redis` image cannot be pulled: Debian's redis-server on the same
# base image as the services (built by deploy/docker/build.sh). Not persistent: it holds the orchestrator's caches.
# On a bridge network Redis must accept non-loopback clients without a password: --protected-mode no (only the
# compose network reaches it; no port is published).
ARG BASE_IMAGE=wikimem/debian-python:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
USER redis
EXPOSE 6379
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["redis-cli", "ping"]
CMD ["redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
