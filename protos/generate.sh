#!/usr/bin/env bash
# Regenerates the Python stubs (with mypy stubs) for wikimem.v1 into clients/python/wikimem/v1.
# The only way generated code changes: never edit the output by hand. `make protos` runs this.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
out="$root/clients/python"
# protoc finds its mypy plugins (protoc-gen-mypy, protoc-gen-mypy_grpc) next to the interpreter.
export PATH="$(dirname "$py"):$PATH"
rm -f "$out"/wikimem/v1/*_pb2*.py "$out"/wikimem/v1/*_pb2*.pyi
"$py" -m grpc_tools.protoc -I "$root/protos" \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  "$root"/protos/wikimem/v1/*.proto
cat > "$out/wikimem/v1/__init__.py" <<'PY'
"""Generated gRPC/protobuf stubs for the wikimem.v1 contract (protos/wikimem/v1). Do not edit: run `make protos`."""
PY
