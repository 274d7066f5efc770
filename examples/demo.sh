#!/usr/bin/env bash
# The wikimem demo (`make demo`): start all services, ingest the sample wiki, ask questions, edit a page,
# ask again, stop. Everything lives in a temporary folder; nothing in the repository is modified.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d -t wikimem-demo.XXXXXX)"
PYTHON="${PYTHON:-python}"
command -v wikimem >/dev/null || { echo "wikimem is not on PATH; run 'make demo' (it creates .venv)"; exit 1; }
command -v "$PYTHON" >/dev/null || PYTHON=python3

export WIKIMEM_DATA="$WORK/data"
# A free port, so the demo never collides with a wikimem that is already running.
export WIKIMEM_ADDR="${WIKIMEM_DEMO_ADDR:-127.0.0.1:$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
export WIKIMEM_LOG_FORMAT=text
START_TIMEOUT="${WIKIMEM_START_TIMEOUT_S:-300}"

SERVER_PID=""
cleanup() {
  local code=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    echo
    echo "== stopping wikimem"
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -t 1 ]]; then banner() { printf '\n\033[1m== %s\033[0m\n' "$*"; }; else banner() { printf '\n== %s\n' "$*"; }; fi

banner "starting wikimem on $WIKIMEM_ADDR (data in $WIKIMEM_DATA)"
wikimem serve >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
deadline=$((SECONDS + START_TIMEOUT))
until grep -q "wikimem ready on" "$WORK/serve.log" 2>/dev/null; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "wikimem serve exited before it was ready:"; cat "$WORK/serve.log"; SERVER_PID=""; exit 1
  fi
  if ((SECONDS > deadline)); then
    echo "wikimem was not ready after ${START_TIMEOUT}s:"; cat "$WORK/serve.log"; exit 1
  fi
  sleep 0.5
done
cat "$WORK/serve.log"

# Work on a copy of the wiki so the edit below leaves examples/wiki untouched.
cp -r "$REPO/examples/wiki" "$WORK/wiki"
cd "$WORK"

banner "wikimem ingest wiki"
wikimem ingest wiki

banner "wikimem docs"
wikimem docs

while IFS= read -r question; do
  [[ -z "$question" ]] && continue
  banner "wikimem ask \"$question\""
  wikimem ask "$question" || true
done <"$REPO/examples/questions.txt"

banner "edit: expense reports are now due within 45 days (wiki/expenses.md)"
sed -i.bak 's/due within 30 days/due within 45 days/' wiki/expenses.md && rm -f wiki/expenses.md.bak
grep -n "due within" wiki/expenses.md

banner "wikimem ingest wiki   (only the edited page changes)"
wikimem ingest wiki

banner "wikimem ask \"When are expense reports due?\"   (the very next answer reflects the edit)"
wikimem ask "When are expense reports due?"

banner "the same question as JSON"
echo "When are expense reports due?" | wikimem ask --json -
