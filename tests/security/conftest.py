"""The stack every security test runs against (security_stack.py): the real services, two orchestrators (auth
off; WIKIMEM_AUTH=jwt,apikey with an audit log), a test IdP and an API keys file."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.system import start_orchestrator, start_system
from security_stack import AUDIENCE, ISSUER, Stack, TestIdP, environment, write_keys

from wikimem_orchestrator.auth.apikeys import digest, mint


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("wikimem-security")
    idp = TestIdP(folder)
    secrets = {name: mint() for name in ("ci-hr", "admin", "revoked-bot", "reader-bot")}
    keys_file = folder / "api-keys.json"
    write_keys(keys_file, [
        {"id": "ci-hr", "sha256": digest(secrets["ci-hr"]), "groups": ["hr"], "roles": ["writer"]},
        {"id": "admin", "sha256": digest(secrets["admin"]), "groups": ["hr"], "roles": ["admin"]},
        {"id": "revoked-bot", "sha256": digest(secrets["revoked-bot"]), "groups": ["hr"], "roles": ["writer"],
         "revoked": True},
        {"id": "reader-bot", "sha256": digest(secrets["reader-bot"]), "groups": ["hr"], "roles": []},
    ])
    audit_file = folder / "audit.jsonl"
    # A cache prefix of our own: the session's Redis is shared with other modules' stacks.
    prefix = {"WIKIMEM_CACHE_PREFIX": f"wikimem-sec-{uuid.uuid4().hex[:8]}:"}
    with environment(prefix):
        system = start_system(folder / "data", redis_url=redis_server.url)
    try:
        auth_env = {
            **prefix,
            "WIKIMEM_AUTH": "jwt,apikey",
            "WIKIMEM_JWKS_FILE": str(idp.jwks_file),
            "WIKIMEM_JWT_ISSUER": ISSUER,
            "WIKIMEM_JWT_AUDIENCE": AUDIENCE,
            "WIKIMEM_JWT_GROUPS_CLAIM": "groups",
            "WIKIMEM_JWT_ROLES_CLAIM": "realm_access.roles",
            "WIKIMEM_JWT_LEEWAY_S": "5",
            "WIKIMEM_JWKS_REFRESH_S": "0",
            "WIKIMEM_API_KEYS_FILE": str(keys_file),
            "WIKIMEM_AUDIT_LOG": str(audit_file),
        }
        with environment(prefix):
            handle = start_orchestrator(system, redis_url=redis_server.url, env=auth_env)
        running = Stack(system, handle, idp, keys_file, audit_file, secrets)
        try:
            yield running
        finally:
            for channel in running.channels:
                channel.close()
            handle.stop(grace=0)
    finally:
        system.close()


