"""Development secrets for the compose stack (and for a dev Helm install): an internal CA with a certificate per
service (mutual TLS between the services) and an API-keys file with one admin key (authentication at the
orchestrator).

    .venv/bin/python deploy/docker/dev-secrets.py                  # -> deploy/docker/secrets/ (git-ignored)
    .venv/bin/python deploy/docker/dev-secrets.py --out DIR        # elsewhere (compose: WIKIMEM_SECRETS=DIR)
    .venv/bin/python deploy/docker/dev-secrets.py --force          # replace an existing set (new CA, new key)
    .venv/bin/python deploy/docker/dev-secrets.py --helm wikimem --namespace wikimem --out DIR
                                                                   # files for the chart's tls.internal Secret

Compose layout (each service's folder is mounted read-only at /run/secrets/wikimem in its container only):

    DIR/<service>/ca.pem, tls.crt, tls.key     for embedder, memory, reranker, reader, orchestrator
    DIR/orchestrator/api-keys.json             WIKIMEM_API_KEYS_FILE (hashed keys only)
    DIR/admin.key                              the admin key itself (wmk_...), for you: WIKIMEM_API_KEY=$(cat ...)

Certificates: ECDSA P-256 from a fresh CA whose private key is never written (no further certificate can be
issued from it), valid for the service's compose name (what its peers dial) and localhost/127.0.0.1 (its own
health check), for TLS server and client authentication. The API key `dev-admin` has the roles admin and writer
and the groups given by --groups. Run as root, the files belong to the images' user (uid/gid 10001, --uid) with
mode 0600 (folders 0700); run as another user they cannot be given away, so they are made readable by all (0644,
folders 0755), which is for a single-user development machine only. An existing set is kept (exit 0) unless
--force; a partial one is an error.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from wikimem_common import tls

SERVICES = ("embedder", "memory", "reranker", "reader", "orchestrator")
DEFAULT_OUT = Path(__file__).resolve().parent / "secrets"
#: The images' non-root user (deploy/docker/base.Dockerfile).
IMAGE_UID = 10001
ADMIN_ID = "dev-admin"
KEY_PATTERN = re.compile(r"\bwmk_[A-Za-z0-9_\-]+")


def compose_files(out: Path) -> list[Path]:
    files = [out / svc / name for svc in SERVICES for name in ("ca.pem", "tls.crt", "tls.key")]
    return [*files, out / "orchestrator" / "api-keys.json", out / "admin.key"]


def _give_to_image_user(out: Path, uid: int) -> str:
    """Make the mounted folders readable by the containers' user; returns what was done, for the report."""
    root = os.geteuid() == 0
    for svc in SERVICES:
        folder = out / svc
        for path in [folder, *folder.iterdir()]:
            if root:
                os.chown(path, uid, uid)
                os.chmod(path, 0o700 if path.is_dir() else 0o600)
            else:
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
    if root:
        return f"owned by uid/gid {uid} (the images' user), 0600"
    return "readable by every user (0644): not root, so they cannot be given to uid 10001; development use only"


def _mint_admin_key(keys_file: Path, groups: str) -> str:
    """A new admin key in `keys_file`, through the orchestrator's own CLI (it stores only the hash)."""
    proc = subprocess.run(
        [sys.executable, "-m", "wikimem_orchestrator.apikeys", "new", "--id", ADMIN_ID, "--groups", groups,
         "--roles", "admin,writer", "--file", str(keys_file)],
        capture_output=True, text=True, check=False,
    )
    found = KEY_PATTERN.search(proc.stdout)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"minting the API key failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return found.group(0)


def make_compose(out: Path, groups: str, uid: int, force: bool) -> int:
    files = compose_files(out)
    present = [f for f in files if f.is_file()]
    if present and not force:
        if len(present) == len(files):
            print(f"{out}: development secrets already there (--force replaces them)")
            return 0
        missing = sorted(str(f.relative_to(out)) for f in files if not f.is_file())
        raise SystemExit(f"{out}: an incomplete set (missing {', '.join(missing)}); run again with --force")
    for svc in SERVICES:
        # docker creates an empty folder (as root) for a bind mount whose source is missing: start clean
        shutil.rmtree(out / svc, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o755)  # docker reads it; the keys are protected by their own folders and modes
    work = out / ".pki"
    shutil.rmtree(work, ignore_errors=True)
    pki = tls.generate_dev_pki(work, names=SERVICES, hosts=("localhost", "127.0.0.1"))
    for svc in SERVICES:
        folder = out / svc
        folder.mkdir(mode=0o700)
        shutil.copyfile(pki.ca, folder / "ca.pem")
        shutil.copyfile(pki.pairs[svc].cert, folder / "tls.crt")
        shutil.copyfile(pki.pairs[svc].key, folder / "tls.key")
    shutil.rmtree(work)
    (out / "admin.key").unlink(missing_ok=True)
    key = _mint_admin_key(out / "orchestrator" / "api-keys.json", groups)
    fd = os.open(out / "admin.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    owner = _give_to_image_user(out, uid)
    print(f"{out}: internal CA + certificates for {', '.join(SERVICES)}; API key {ADMIN_ID!r} (roles admin,writer, "
          f"groups {groups or '-'}) in orchestrator/api-keys.json; the key itself in admin.key. Files {owner}.")
    print(f"use it: export WIKIMEM_API_KEY=$(cat {out / 'admin.key'})")
    return 0


def make_helm(out: Path, release: str, namespace: str, fullname: str | None, force: bool) -> int:
    """One certificate for all five services, named as the chart names their Services; files for the Secret."""
    names = ("tls.crt", "tls.key", "ca.crt")
    if any((out / n).exists() for n in names) and not force:
        raise SystemExit(f"{out} already holds {', '.join(names)}; --force replaces them")
    base = fullname or (release if "wikimem" in release else f"{release}-wikimem")
    hosts: list[str] = []
    for svc in SERVICES:
        name = f"{base}-{svc}"
        hosts += [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]
    hosts += ["localhost", "127.0.0.1"]
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = tls.new_ca()
    key, cert = tls.issue(ca_key, ca_cert, f"{base}-internal", hosts)
    tls.write_pair(key, cert, out / "tls.crt", out / "tls.key")
    from cryptography.hazmat.primitives import serialization

    (out / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    print(f"{out}: tls.crt, tls.key (for {base}-<service> in namespace {namespace}, localhost), ca.crt")
    print(f"kubectl -n {namespace} create secret generic {base}-internal-tls "
          f"--from-file={out / 'tls.crt'} --from-file={out / 'tls.key'} --from-file={out / 'ca.crt'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, help=f"output folder (default: {DEFAULT_OUT}; with --helm: required)")
    parser.add_argument("--force", action="store_true", help="replace an existing set")
    parser.add_argument("--groups", default="", help="comma-separated groups of the admin key (ACL filtering)")
    parser.add_argument("--uid", type=int, default=IMAGE_UID, help="owner of the mounted files when run as root")
    parser.add_argument("--helm", metavar="RELEASE", help="instead: the chart's internal TLS Secret for RELEASE")
    parser.add_argument("--namespace", default="default", help="with --helm: the release's namespace")
    parser.add_argument("--fullname", help="with --helm: the chart's fullnameOverride, if set")
    args = parser.parse_args(argv)
    if args.helm:
        if args.out is None:
            parser.error("--helm needs --out")
        return make_helm(args.out, args.helm, args.namespace, args.fullname, args.force)
    return make_compose(args.out or DEFAULT_OUT, args.groups, args.uid, args.force)


if __name__ == "__main__":
    sys.exit(main())
