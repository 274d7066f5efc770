#!/usr/bin/env bash
# Builds the wikimem images from the repository root (the build context; see .dockerignore):
#   wikimem/base, wikimem/base-onnx   shared layers: python venv + third-party deps (base.Dockerfile)
#   wikimem/{embedder,memory,reranker,reader,orchestrator}   thin per-service images (<service>.Dockerfile)
#   wikimem/redis                     the public redis image re-tagged, or Debian's redis-server (redis.Dockerfile)
# Usage: deploy/docker/build.sh [SERVICE...]      (default: all five; the base images are always brought up to date)
# Environment:
#   BASE_IMAGE    Python 3.11 base (default: python:3.11-slim, pulled unchanged; where it cannot be pulled, a Debian
#                 bookworm + python3 image made locally by make-base.sh, wikimem/debian-python:bookworm)
#   REDIS_IMAGE   public Redis image to use (default redis:7-alpine; if it cannot be pulled: redis.Dockerfile)
#   WIKIMEM_TAG   image tag (default latest; docker-compose.yml reads the same variable)
# Uses the classic builder (DOCKER_BUILDKIT=0), which every docker engine has, buildx or not. Prints build time and
# size per image.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
here=deploy/docker
tag=${WIKIMEM_TAG:-latest}
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}
all_services=(embedder memory reranker reader orchestrator)
services=("$@")
[[ ${#services[@]} -gt 0 ]] || services=("${all_services[@]}")
for s in "${services[@]}"; do
  if [[ " ${all_services[*]} " != *" $s "* ]]; then
    echo "build.sh: unknown service $s (one of: ${all_services[*]})" >&2
    exit 2
  fi
done

docker info >/dev/null 2>&1 || {
  echo "build.sh: no docker daemon reachable; start one (deploy/docker/ensure-engine.sh installs and starts it)" >&2
  exit 1
}

logs=$(mktemp -d -t wikimem-build.XXXXXX)
trap 'rm -rf "$logs" "$here/ca"' EXIT
declare -a report=()
mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f", $1/1e6}'; }
row() { report+=("$(printf '%-28s %6s %6s MB  %s' "$1" "$2" "$3" "$4")"); }  # image, seconds, MB, note

# pull IMAGE: true when the image is here or could be pulled (a machine without registry access fails fast).
pull() { docker image inspect "$1" >/dev/null 2>&1 || timeout 300 docker pull -q "$1" >/dev/null 2>&1; }

# build NAME DOCKERFILE PARENT [docker build args...]: a timed build; the log is shown only when it fails. The build
# steps run under dockerd, so they have its priority (ensure-engine.sh starts it with nice -n 10).
build() {
  local name=$1 file=$2 parent=$3 start=$SECONDS previous
  shift 3
  previous=$(docker image inspect -f '{{.Id}}' "wikimem/$name:$tag" 2>/dev/null || true)
  if ! docker build --network=host -f "$here/$file" -t "wikimem/$name:$tag" "$@" . >"$logs/$name.log" 2>&1; then
    echo "build.sh: building wikimem/$name failed:" >&2
    tail -40 "$logs/$name.log" >&2
    exit 1
  fi
  # The image this build replaced, once nothing refers to it (a rebuild would otherwise leave it dangling).
  if [[ -n $previous && $previous != "$(docker image inspect -f '{{.Id}}' "wikimem/$name:$tag")" ]]; then
    docker rmi "$previous" >/dev/null 2>&1 || true
  fi
  local size added="" took=$((SECONDS - start))
  size=$(mb "wikimem/$name:$tag")
  [[ -n "$parent" ]] && added="+$((size - $(mb "$parent"))) MB over $parent"
  row "wikimem/$name:$tag" "${took}s" "$size" "$added"
  echo "built wikimem/$name:$tag in ${took}s"
}

total=$SECONDS
base_image=${BASE_IMAGE:-}
if [[ -z "$base_image" ]]; then
  if pull python:3.11-slim; then
    base_image=python:3.11-slim
  else
    base_image=wikimem/debian-python:bookworm
    if ! docker image inspect "$base_image" >/dev/null 2>&1; then
      echo "python:3.11-slim cannot be pulled here: making $base_image with mmdebstrap (about 40 s)"
      start=$SECONDS
      "$here/make-base.sh" "$base_image"
      row "$base_image" "$((SECONDS - start))s" "$(mb "$base_image")" "mmdebstrap + docker import"
    fi
  fi
elif ! pull "$base_image"; then
  echo "build.sh: BASE_IMAGE=$base_image is neither here nor pullable" >&2
  exit 1
fi
echo "base image: $base_image"

# The build machine's locally added CA certificates (Debian's update-ca-certificates local directory), for pip in
# the build behind a TLS-inspecting proxy; an empty folder where there are none. Removed again on exit.
rm -rf "$here/ca" && mkdir -p "$here/ca"
if [[ -d /usr/local/share/ca-certificates ]]; then
  find -L /usr/local/share/ca-certificates -type f -name '*.crt' -exec cp {} "$here/ca/" \;
fi
echo "CA certificates for the build: $(find "$here/ca" -name '*.crt' | wc -l)"

build base base.Dockerfile "$base_image" --target base --build-arg "BASE_IMAGE=$base_image"
onnx=0
for s in "${services[@]}"; do [[ $s == embedder || $s == reranker || $s == reader ]] && onnx=1; done
if ((onnx)); then
  build base-onnx base.Dockerfile "wikimem/base:$tag" --target onnx --build-arg "BASE_IMAGE=$base_image"
fi
for s in "${services[@]}"; do
  parent=wikimem/base:$tag
  [[ $s == embedder || $s == reranker || $s == reader ]] && parent=wikimem/base-onnx:$tag
  build "$s" "$s.Dockerfile" "$parent" --build-arg "WIKIMEM_BASE=$parent"
done

redis_image=${REDIS_IMAGE:-redis:7-alpine}
if pull "$redis_image"; then
  docker tag "$redis_image" "wikimem/redis:$tag"
  row "wikimem/redis:$tag" "-" "$(mb "wikimem/redis:$tag")" "= $redis_image"
else
  build redis redis.Dockerfile "$base_image" --build-arg "BASE_IMAGE=$base_image"
fi

echo
printf '%-28s %6s %9s  %s\n' image build size "(layers are shared: the size over the parent is what an image adds)"
printf '%s\n' "${report[@]}"
echo "total build time: $((SECONDS - total))s"
