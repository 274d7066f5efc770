#!/usr/bin/env bash
# Makes sure a container engine is ready for deploy/docker/build.sh and the compose test:
#   - installs docker.io, docker-compose and mmdebstrap with apt-get where they are missing (root only);
#   - starts dockerd when no daemon answers (niced: builds and containers inherit it) and waits for it (log:
#     $WIKIMEM_DOCKERD_LOG, default /var/log/wikimem-dockerd.log); its pid goes to the file named by
#     $WIKIMEM_DOCKERD_PIDFILE, if set, so that whoever asked can stop it again.
# Exit status: 0 ready; 3 no container engine can be installed or started here (the reason on stderr: not root,
# no apt-get); anything else: an error.
set -euo pipefail
log=${WIKIMEM_DOCKERD_LOG:-/var/log/wikimem-dockerd.log}
cannot() { echo "$*" >&2; exit 3; }

compose_ok() { command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; }
missing=()
command -v docker >/dev/null || missing+=(docker.io)
command -v dockerd >/dev/null || docker info >/dev/null 2>&1 || missing+=(docker.io)
compose_ok || missing+=(docker-compose)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $(id -u) -ne 0 ]]; then
    command -v docker >/dev/null && compose_ok ||
      cannot "no container engine: ${missing[*]} missing and installing needs root (run as root, or install docker)"
  elif ! command -v apt-get >/dev/null; then
    command -v docker >/dev/null && compose_ok ||
      cannot "no container engine: ${missing[*]} missing and there is no apt-get to install them"
  else
    echo "installing ${missing[*]} (apt-get)"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if docker info >/dev/null 2>&1; then
  echo "docker daemon: running ($(docker info -f '{{.ServerVersion}}'))"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || cannot "no docker daemon answers and starting one needs root"
command -v dockerd >/dev/null || cannot "no docker daemon answers and dockerd is not installed"
echo "starting dockerd (log: $log)"
nice -n 10 setsid dockerd >"$log" 2>&1 </dev/null &
pid=$!
[[ -n ${WIKIMEM_DOCKERD_PIDFILE:-} ]] && echo "$pid" >"$WIKIMEM_DOCKERD_PIDFILE"
for _ in $(seq 120); do
  if docker info >/dev/null 2>&1; then
    echo "docker daemon: started ($(docker info -f '{{.ServerVersion}}'), pid $pid)"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; echo "dockerd exited at start (log above)" >&2; exit 1; }
  sleep 0.5
done
tail -20 "$log" >&2
echo "dockerd did not answer within 60 s" >&2
exit 1
