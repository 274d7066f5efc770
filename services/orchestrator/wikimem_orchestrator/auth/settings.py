"""Authentication and authorisation settings (WIKIMEM_AUTH and friends; docs/security.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wikimem_common.config import ConfigError, env_float, env_str

#: What WIKIMEM_AUTH may name (comma-separated); "off" alone turns authentication off.
MODES = ("jwt", "apikey")
#: Asymmetric algorithms a token may be signed with (never "none" or a shared-secret HS*).
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
#: Readers that cost little; any other (local-llm, openai) is "generative" and needs a role when auth is on.
CHEAP_READERS = ("", "extractive")


def parse_names(raw: str) -> frozenset[str]:
    return frozenset(n.strip() for n in raw.split(",") if n.strip())


def parse_writers(raw: str) -> dict[str, frozenset[str]]:
    """'eng=writer-eng,team-eng;*=admin' -> {'eng': {'writer-eng', 'team-eng'}, '*': {'admin'}}: who (a role or a
    group) may write each collection; '*' applies to every collection; 'default' names the default collection."""
    writers: dict[str, frozenset[str]] = {}
    for part in raw.split(";"):
        if not part.strip():
            continue
        collection, sep, names = part.partition("=")
        if not sep or not collection.strip() or not parse_names(names):
            raise ConfigError(
                f"WIKIMEM_WRITERS entry {part.strip()!r} is not COLLECTION=ROLE_OR_GROUP[,...] "
                "(e.g. 'eng=writer-eng,team-eng;*=admin')"
            )
        writers[collection.strip()] = writers.get(collection.strip(), frozenset()) | parse_names(names)
    return writers


@dataclass(frozen=True)
class AuthConfig:
    #: Accepted credentials: () = off (x-wikimem-groups trusted: local development only), or "jwt" / "apikey".
    modes: tuple[str, ...] = ()
    jwks_file: Path | None = None
    jwks_url: str | None = None
    #: Re-fetch a JWKS URL this often even without an unknown kid.
    jwks_ttl_s: float = 300.0
    #: At most one re-read for an unknown kid per this many seconds (a flood of made-up kids costs nothing).
    jwks_refresh_s: float = 10.0
    jwt_issuer: str = ""
    jwt_audience: tuple[str, ...] = ()
    #: Dotted paths into the token's claims: the caller's groups and roles ("realm_access.roles" for Keycloak).
    groups_claim: str = "groups"
    roles_claim: str = "roles"
    leeway_s: float = 30.0
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    api_keys_file: Path | None = None
    #: Collection -> roles or groups that may write it ('*': all collections). Auth off: no check.
    writers: Mapping[str, frozenset[str]] = field(default_factory=lambda: {"*": frozenset({"writer", "admin"})})
    #: Roles that may overwrite or delete any document (ACLs included) and write every collection.
    admin_roles: frozenset[str] = frozenset({"admin"})
    #: Roles that may choose a generative reader (local-llm, openai) when auth is on.
    generative_roles: frozenset[str] = frozenset({"llm", "admin"})
    #: Auth off: whether anyone may choose a generative reader ("allowed") or no one ("denied").
    generative_readers: str = "allowed"
    #: JSON-lines audit trail (appended); None: the service log (logger wikimem.audit).
    audit_log: Path | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.modes)

    @classmethod
    def from_env(cls) -> AuthConfig:
        raw_modes = env_str("WIKIMEM_AUTH", "off").strip().lower()
        modes = () if raw_modes in ("off", "none", "") else tuple(sorted(parse_names(raw_modes)))
        jwks_file = env_str("WIKIMEM_JWKS_FILE", "")
        api_keys = env_str("WIKIMEM_API_KEYS_FILE", "")
        audit = env_str("WIKIMEM_AUDIT_LOG", "")
        config = cls(
            modes=modes,
            jwks_file=Path(jwks_file) if jwks_file else None,
            jwks_url=env_str("WIKIMEM_JWKS_URL", "") or None,
            jwks_ttl_s=env_float("WIKIMEM_JWKS_TTL_S", 300.0),
            jwks_refresh_s=env_float("WIKIMEM_JWKS_REFRESH_S", 10.0),
            jwt_issuer=env_str("WIKIMEM_JWT_ISSUER", ""),
            jwt_audience=tuple(sorted(parse_names(env_str("WIKIMEM_JWT_AUDIENCE", "")))),
            groups_claim=env_str("WIKIMEM_JWT_GROUPS_CLAIM", "groups").strip(),
            roles_claim=env_str("WIKIMEM_JWT_ROLES_CLAIM", "roles").strip(),
            leeway_s=env_float("WIKIMEM_JWT_LEEWAY_S", 30.0),
            algorithms=tuple(sorted(parse_names(env_str("WIKIMEM_JWT_ALGORITHMS", "RS256,ES256")))),
            api_keys_file=Path(api_keys) if api_keys else None,
            writers=parse_writers(env_str("WIKIMEM_WRITERS", "*=writer,admin")),
            admin_roles=parse_names(env_str("WIKIMEM_ADMIN_ROLES", "admin")),
            generative_roles=parse_names(env_str("WIKIMEM_GENERATIVE_ROLES", "llm,admin")),
            generative_readers=env_str("WIKIMEM_GENERATIVE_READERS", "allowed").strip().lower(),
            audit_log=Path(audit) if audit else None,
        )
        config.validate()
        return config

    def validate(self) -> None:
        unknown = [m for m in self.modes if m not in MODES]
        if unknown:
            raise ConfigError(f"WIKIMEM_AUTH names {unknown}; use off, jwt, apikey or jwt,apikey")
        jwt_on = "jwt" in self.modes
        if jwt_on:
            if (self.jwks_file is None) == (self.jwks_url is None):
                raise ConfigError("WIKIMEM_AUTH=jwt needs exactly one of WIKIMEM_JWKS_FILE and WIKIMEM_JWKS_URL")
            if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
                raise ConfigError(f"WIKIMEM_JWKS_URL={self.jwks_url!r} must be an http(s) URL")
            if self.jwks_file is not None and not self.jwks_file.is_file():
                raise ConfigError(f"WIKIMEM_JWKS_FILE={self.jwks_file} is not a readable file")
            if not self.jwt_issuer:
                raise ConfigError("WIKIMEM_AUTH=jwt needs WIKIMEM_JWT_ISSUER (the IdP's issuer URL, the `iss` claim)")
            if not self.jwt_audience:
                raise ConfigError("WIKIMEM_AUTH=jwt needs WIKIMEM_JWT_AUDIENCE (the client id tokens are issued for)")
            bad = [a for a in self.algorithms if a not in ALLOWED_ALGORITHMS]
            if bad or not self.algorithms:
                raise ConfigError(
                    f"WIKIMEM_JWT_ALGORITHMS={','.join(self.algorithms)!r}: use some of {', '.join(ALLOWED_ALGORITHMS)}"
                )
            if not self.groups_claim or not self.roles_claim:
                raise ConfigError("WIKIMEM_JWT_GROUPS_CLAIM and WIKIMEM_JWT_ROLES_CLAIM must not be empty")
            if not 0 <= self.leeway_s <= 600:
                raise ConfigError(f"WIKIMEM_JWT_LEEWAY_S must be in [0, 600], got {self.leeway_s}")
            if self.jwks_ttl_s <= 0 or self.jwks_refresh_s < 0:
                raise ConfigError("WIKIMEM_JWKS_TTL_S must be > 0 and WIKIMEM_JWKS_REFRESH_S >= 0")
        else:
            stray = [name for name, value in (("WIKIMEM_JWKS_FILE", self.jwks_file), ("WIKIMEM_JWKS_URL",
                     self.jwks_url), ("WIKIMEM_JWT_ISSUER", self.jwt_issuer)) if value]
            if stray:
                raise ConfigError(f"{', '.join(stray)} set but WIKIMEM_AUTH does not include jwt; add it or unset them")
        if "apikey" in self.modes:
            if self.api_keys_file is None:
                raise ConfigError("WIKIMEM_AUTH=apikey needs WIKIMEM_API_KEYS_FILE (JSON or YAML; docs/security.md)")
            if not self.api_keys_file.is_file():
                raise ConfigError(f"WIKIMEM_API_KEYS_FILE={self.api_keys_file} is not a readable file")
        elif self.api_keys_file is not None:
            raise ConfigError("WIKIMEM_API_KEYS_FILE set but WIKIMEM_AUTH does not include apikey; add it or unset it")
        if self.generative_readers not in ("allowed", "denied"):
            raise ConfigError(
                f"WIKIMEM_GENERATIVE_READERS must be 'allowed' or 'denied', got {self.generative_readers!r}"
            )
        if self.audit_log is not None and not self.audit_log.parent.is_dir():
            raise ConfigError(f"WIKIMEM_AUDIT_LOG={self.audit_log}: the folder {self.audit_log.parent} does not exist")


def loopback(address: str) -> bool:
    """True for 127.x, ::1 and localhost listen addresses."""
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    return host in ("localhost", "::1") or host.startswith("127.")
