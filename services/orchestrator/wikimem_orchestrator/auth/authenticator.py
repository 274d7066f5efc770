"""Per-call identity: the credential in the call's metadata, verified, or (auth off) the anonymous caller with
the groups it claims in x-wikimem-groups.

With auth on, every Rag call needs `authorization: Bearer <JWT>` (WIKIMEM_AUTH includes jwt) or
`x-wikimem-api-key: <key>` (includes apikey); x-wikimem-groups is ignored. Health and reflection are separate
services and stay open.
"""

from __future__ import annotations

from collections.abc import Iterable

from wikimem_contract import metadata

from .apikeys import ApiKeyStore
from .identity import Identity, Unauthenticated, anonymous, string_list
from .settings import AuthConfig
from .tokens import JwtVerifier

Metadata = Iterable[tuple[str, str | bytes]]


class Authenticator:
    def __init__(
        self, config: AuthConfig, jwt: JwtVerifier | None = None, api_keys: ApiKeyStore | None = None
    ) -> None:
        self.config = config
        self.jwt = jwt if jwt is not None or "jwt" not in config.modes else JwtVerifier(config)
        self.api_keys = api_keys
        if api_keys is None and "apikey" in config.modes:
            assert config.api_keys_file is not None
            self.api_keys = ApiKeyStore(config.api_keys_file)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def identify(self, call_metadata: Metadata | None) -> Identity:
        values: dict[str, list[str]] = {}
        for key, value in call_metadata or ():
            values.setdefault(key.lower(), []).append(value.decode() if isinstance(value, bytes) else str(value))
        if not self.enabled:
            return anonymous(string_list(",".join(values.get(metadata.GROUPS, []))))
        bearer = values.get(metadata.AUTHORIZATION, [])
        api_key = values.get(metadata.API_KEY, [])
        accepted = " or ".join(
            [*(["authorization: Bearer <token>"] if self.jwt else []), *([f"{metadata.API_KEY}: <key>"]
                                                                           if self.api_keys else [])]
        )
        if len(bearer) + len(api_key) > 1:
            raise Unauthenticated(f"send one credential ({accepted}), not several")
        if bearer:
            scheme, _, token = bearer[0].strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("malformed authorization header: use 'Bearer <token>'")
            if self.jwt is None:
                raise Unauthenticated(f"bearer tokens are not accepted here (WIKIMEM_AUTH=apikey); send {accepted}")
            return self.jwt.verify(token.strip())
        if api_key:
            if self.api_keys is None:
                raise Unauthenticated(f"API keys are not accepted here (WIKIMEM_AUTH=jwt); send {accepted}")
            return self.api_keys.verify(api_key[0])
        raise Unauthenticated(f"missing credentials: send {accepted}")
