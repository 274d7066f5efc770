"""The caller's credential, sent as metadata on every call: an OIDC / JWT bearer token (`token`, else
$WIKIMEM_TOKEN) or a service-account API key (`api_key`, else $WIKIMEM_API_KEY). Servers with authentication off
ignore both; with it on, the groups come from the credential and `groups` is ignored."""

from __future__ import annotations

import os

from wikimem.errors import WikimemError
from wikimem_contract import metadata


def credential_metadata(token: str | None = None, api_key: str | None = None) -> tuple[tuple[str, str], ...]:
    token = (token if token is not None else os.environ.get("WIKIMEM_TOKEN", "")).strip()
    api_key = (api_key if api_key is not None else os.environ.get("WIKIMEM_API_KEY", "")).strip()
    if token and api_key:
        raise WikimemError(
            "give a token or an API key, not both (--token / WIKIMEM_TOKEN, --api-key / WIKIMEM_API_KEY)"
        )
    if token:
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        return ((metadata.AUTHORIZATION, f"Bearer {token}"),)
    if api_key:
        return ((metadata.API_KEY, api_key),)
    return ()
