"""OIDC / JWT bearer tokens, verified with PyJWT against the IdP's JWKS (a file or a URL).

The key set is cached: a file is re-read when it changes (mtime, size), a URL every `jwks_ttl_s`; a token signed
with a key id not in the cache triggers one re-read (at most one per `jwks_refresh_s`, so made-up kids cost
nothing), which is how a key rotation at the IdP is picked up. Checked: signature, algorithm (allow-list of
asymmetric ones), `iss`, `aud`, `exp`, `nbf`/`iat` with `leeway_s` of clock skew, and `sub` present.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

import jwt
from jwt import PyJWK

from .identity import JWT, Identity, Unauthenticated, string_list
from .settings import AuthConfig

log = logging.getLogger("wikimem.orchestrator.auth")

#: Seconds to wait for the IdP's JWKS URL.
FETCH_TIMEOUT_S = 5.0


def claim(claims: Mapping[str, Any], path: str) -> object:
    """The value at a dotted path ('realm_access.roles'), or None."""
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


class JwksSource:
    """The signing keys by kid, from a JWKS file or URL, with the caching described above."""

    def __init__(self, config: AuthConfig) -> None:
        self.file = config.jwks_file
        self.url = config.jwks_url
        self.ttl_s = config.jwks_ttl_s
        self.refresh_s = config.jwks_refresh_s
        self.algorithms = set(config.algorithms)
        self._lock = threading.Lock()
        #: kid -> (key, the algorithm the JWK names or None).
        self._keys: dict[str, tuple[PyJWK, str | None]] = {}
        self._stamp: tuple[int, int] | None = None
        self._loaded_at = 0.0
        self._forced_at = -1e9
        self._load()  # fail fast: a JWKS that cannot be read or has no usable key stops the service at start
        if not self._keys:
            raise ValueError(f"the JWKS at {self.file or self.url} has no signing key for {sorted(self.algorithms)}")

    def _read(self) -> dict[str, Any]:
        if self.file is not None:
            return dict(json.loads(self.file.read_text(encoding="utf-8")))
        assert self.url is not None
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            return dict(json.loads(response.read()))

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.file is None:
            return None
        st = os.stat(self.file)
        return st.st_mtime_ns, st.st_size

    def _load(self) -> None:
        stamp = self._file_stamp()
        document = self._read()
        keys: dict[str, tuple[PyJWK, str | None]] = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = PyJWK(entry)
            except jwt.PyJWTError as exc:  # e.g. an algorithm this PyJWT does not know: skip that key
                log.warning("JWKS key skipped", extra={"kid": entry.get("kid"), "error": str(exc)})
                continue
            if key.algorithm_name in self.algorithms:
                keys[str(entry.get("kid", ""))] = (key, entry.get("alg"))
        self._keys, self._stamp, self._loaded_at = keys, stamp, time.monotonic()

    def _stale(self) -> bool:
        if self.file is not None:
            try:
                return self._file_stamp() != self._stamp
            except OSError:
                return False  # the file is being replaced: keep the keys we have
        return time.monotonic() - self._loaded_at > self.ttl_s

    def _reload(self) -> None:
        try:
            self._load()
        except Exception as exc:  # keep the cached keys; the IdP may be briefly unreachable
            log.warning("JWKS reload failed; keeping the cached keys", extra={"error": str(exc)})

    def key(self, kid: str) -> tuple[PyJWK, str | None] | None:
        with self._lock:
            if self._stale():
                self._reload()
            if kid not in self._keys and time.monotonic() - self._forced_at >= self.refresh_s:
                self._forced_at = time.monotonic()
                self._reload()
            return self._keys.get(kid)


class JwtVerifier:
    def __init__(self, config: AuthConfig, source: JwksSource | None = None) -> None:
        self.config = config
        self.source = source or JwksSource(config)
        self.audience = list(config.jwt_audience)

    def verify(self, token: str) -> Identity:
        """The identity in a valid token; Unauthenticated saying what is wrong otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed bearer token: not a JWT") from None
        alg = str(header.get("alg", ""))
        if alg not in self.config.algorithms:
            raise Unauthenticated(
                f"token algorithm {alg!r} is not accepted; use one of {', '.join(self.config.algorithms)}"
            )
        kid = str(header.get("kid", ""))
        found = self.source.key(kid)
        if found is None:
            raise Unauthenticated(f"bad signature: the token's key id {kid!r} is not in the IdP's key set")
        key, key_alg = found
        if key_alg is not None and key_alg != alg:
            raise Unauthenticated(f"bad signature: key {kid!r} signs with {key_alg}, the token says {alg}")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.config.jwt_issuer,
                leeway=self.config.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired (exp is in the past); get a new one") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not yet valid (nbf or iat is in the future)") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("bad signature: the token was not signed by the IdP's key") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"wrong issuer: tokens must come from {self.config.jwt_issuer}") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"wrong audience: tokens must be issued for {', '.join(self.audience)}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        return Identity(
            kind=JWT,
            subject=str(claims["sub"]),
            groups=string_list(claim(claims, self.config.groups_claim)),
            roles=frozenset(string_list(claim(claims, self.config.roles_claim))),
        )
