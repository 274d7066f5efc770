#!/usr/bin/env bash
# Makes a slim Debian bookworm image with Python 3.11 (venv + pip wheels) and ca-certificates, for machines that
# cannot pull `python:3.11-slim` from a registry: mmdebstrap from the Debian mirror, then `docker import`.
#   deploy/docker/make-base.sh [IMAGE]        (default wikimem/debian-python:bookworm)
# Needs root, mmdebstrap (apt-get install mmdebstrap) and a running docker daemon. About 40 s.
# Like the official slim images it leaves out docs, man pages and locales; Python is Debian's 3.11.
set -euo pipefail
image=${1:-wikimem/debian-python:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if ! command -v mmdebstrap >/dev/null; then
  echo "make-base.sh: mmdebstrap is missing (apt-get install mmdebstrap)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# merged-usr hook: /usr-merge without the usrmerge package (which would pull in perl).
nice -n 10 mmdebstrap --variant=minbase --quiet \
  --include=python3,python3-venv,ca-certificates \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/var/log/apt/*' \
  bookworm "$tmp/base.tar" "$mirror" >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; exit 1; }

docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --message "Debian bookworm minbase + python3 (mmdebstrap)" \
  "$tmp/base.tar" "$image" >/dev/null
echo "made $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
