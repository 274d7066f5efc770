#!/usr/bin/env bash
# Regenerates the Python stubs (with mypy stubs) of the wikimem.v1 contract into the contract package,
# protos/python/wikimem_contract/v1 (importable as `wikimem_contract.v1`). The only way generated code changes:
# never edit the output by hand. `make protos` runs this.
# protoc names imports after the proto path (`from wikimem.v1 import common_pb2`); the contract package is
# `wikimem_contract`, so those absolute imports are rewritten to `wikimem_contract.v1` (nothing else changes).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
dest="$root/protos/python/wikimem_contract/v1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# protoc finds its mypy plugins (protoc-gen-mypy, protoc-gen-mypy_grpc) next to the interpreter.
export PATH="$(dirname "$py"):$PATH"
"$py" -m grpc_tools.protoc -I "$root/protos" \
  --python_out="$tmp" --grpc_python_out="$tmp" \
  --mypy_out="$tmp" --mypy_grpc_out="$tmp" \
  "$root"/protos/wikimem/v1/*.proto
sed -i -E 's/^(from|import) wikimem\.v1( |\.)/\1 wikimem_contract.v1\2/; s/\bwikimem\.v1\.([a-z_]+_pb2)\b/wikimem_contract.v1.\1/g' \
  "$tmp"/wikimem/v1/*.py "$tmp"/wikimem/v1/*.pyi
mkdir -p "$dest"
rm -f "$dest"/*_pb2*.py "$dest"/*_pb2*.pyi
cp "$tmp"/wikimem/v1/*_pb2*.py "$tmp"/wikimem/v1/*_pb2*.pyi "$dest"/
cat > "$dest/__init__.py" <<'PY'
"""Generated gRPC/protobuf stubs for the wikimem.v1 contract (protos/wikimem/v1). Do not edit: run `make protos`."""
PY
