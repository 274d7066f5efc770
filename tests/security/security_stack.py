"""Security test helpers: a test IdP (RSA and EC keys generated here, a JWKS file, tokens signed with PyJWT), an API
keys file, and the real stack (real models, Qdrant Edge, real Redis) with two orchestrators on it: the default one
(auth off, the local-dev mode) and one with WIKIMEM_AUTH=jwt,apikey and an audit log.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from e2e.system import System
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from wikimem_common.server import ServerHandle
from wikimem_contract import metadata
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

ISSUER = "https://idp.test/realms/wikimem"
AUDIENCE = "wikimem"
RSA_KID = "test-rsa-1"
EC_KID = "test-ec-1"

Meta = list[tuple[str, str]]


class TestIdP:
    """Signs tokens like an OIDC provider would; `jwks` is its published key set (written to a file)."""

    __test__ = False

    def __init__(self, folder: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        #: Not in the JWKS: tokens it signs (under the real kid) must fail with "bad signature".
        self.attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        folder.mkdir(parents=True, exist_ok=True)
        self.jwks_file = folder / "jwks.json"
        self.keys: list[dict[str, Any]] = []
        self.publish(self.rsa, RSA_KID, "RS256")
        self.publish(self.ec, EC_KID, "ES256")

    def publish(self, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, alg: str) -> None:
        if isinstance(key, rsa.RSAPrivateKey):
            entry = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        else:
            entry = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        entry.update({"kid": kid, "alg": alg, "use": "sig"})
        self.keys.append(entry)
        tmp = self.jwks_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": self.keys}))
        tmp.replace(self.jwks_file)

    def token(
        self,
        sub: str,
        groups: Sequence[str] = (),
        roles: Sequence[str] = (),
        *,
        key: Any = None,
        kid: str = RSA_KID,
        alg: str = "RS256",
        **claims: Any,
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now, "exp": now + 300,
            "groups": list(groups), "realm_access": {"roles": list(roles)},
        }
        body.update(claims)
        signer = key if key is not None else (self.ec if alg.startswith("ES") else self.rsa)
        return jwt.encode(body, signer, algorithm=alg, headers={"kid": kid})


def bearer(token: str) -> Meta:
    return [(metadata.AUTHORIZATION, f"Bearer {token}")]


def api_key(key: str) -> Meta:
    return [(metadata.API_KEY, key)]


@dataclass
class Stack:
    system: System
    auth: ServerHandle
    idp: TestIdP
    keys_file: Path
    audit_file: Path
    #: API keys by id (the secrets; the file holds their hashes).
    api_keys: dict[str, str]
    channels: list[grpc.Channel] = field(default_factory=list)

    def stub(self, auth: bool = True) -> rag_pb2_grpc.RagStub:
        channel = grpc.insecure_channel(self.auth.address if auth else self.system.address)
        self.channels.append(channel)
        return rag_pb2_grpc.RagStub(channel)

    @property
    def admin(self) -> Meta:
        return api_key(self.api_keys["admin"])

    def audit_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_file.read_text(encoding="utf-8").splitlines() if line]


def write_keys(path: Path, entries: Sequence[Mapping[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"keys": list(entries)}))
    tmp.replace(path)


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """(status code, details) of a call; OK and "" when it succeeds."""
    try:
        result = call()
        if hasattr(result, "__next__"):
            list(result)  # type: ignore[call-overload]
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def put(
    stub: rag_pb2_grpc.RagStub, meta: Meta, doc_id: str, text: str, acl: Sequence[str] = (), **fields: Any
) -> rag_pb2.PutDocumentResponse:
    request = rag_pb2.PutDocumentRequest(doc_id=doc_id, text=text, acl=list(acl), **fields)
    return stub.PutDocument(request, metadata=meta, timeout=60)


def source_text(stub: rag_pb2_grpc.RagStub, meta: Meta, doc_id: str, collection: str = "") -> str:
    """The whole current text of a document as `meta` may read it."""
    request = rag_pb2.GetSourceRequest(doc_id=doc_id, collection=collection, start=0, end=0, context_chars=20_000)
    return str(stub.GetSource(request, metadata=meta, timeout=60).after)


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
