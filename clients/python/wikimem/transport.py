"""The client's channel to the orchestrator: plaintext, or TLS (`tls=True`, or `ca_file`, or $WIKIMEM_TLS=1, or
$WIKIMEM_CA_FILE). `ca_file` is the PEM bundle of the CA(s) to trust; without it, the system's roots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from wikimem.errors import WikimemError

_TRUE = ("1", "true", "yes", "on")


def tls_settings(tls: bool | None, ca_file: str | None) -> tuple[bool, bytes | None]:
    """(use TLS, trusted roots PEM or None for the system's); arguments first, then the environment."""
    ca = ca_file or os.environ.get("WIKIMEM_CA_FILE") or None
    use = tls if tls is not None else (os.environ.get("WIKIMEM_TLS", "").strip().lower() in _TRUE or ca is not None)
    if not use:
        return False, None
    if ca is None:
        return True, None
    try:
        return True, Path(ca).read_bytes()
    except OSError as exc:
        raise WikimemError(f"cannot read the CA file {ca} (--ca-file / WIKIMEM_CA_FILE): {exc.strerror}") from None


def open_channel(address: str, options: Any, tls: bool | None = None, ca_file: str | None = None) -> grpc.Channel:
    use, roots = tls_settings(tls, ca_file)
    if not use:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots), options=options)


def open_aio_channel(
    address: str, options: Any, tls: bool | None = None, ca_file: str | None = None
) -> grpc.aio.Channel:
    use, roots = tls_settings(tls, ca_file)
    if not use:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots), options=options)
