"""Who is calling: the identity a credential proves (or the anonymous caller when authentication is off)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from wikimem_common.errors import ServiceError

ANONYMOUS = "anonymous"
JWT = "jwt"
API_KEY = "apikey"


class Unauthenticated(ServiceError):
    """Missing or bad credentials (gRPC UNAUTHENTICATED); the message says which."""

    code = grpc.StatusCode.UNAUTHENTICATED


@dataclass(frozen=True)
class Identity:
    #: ANONYMOUS, JWT or API_KEY.
    kind: str
    #: The token's `sub`, the API key's id; "" for the anonymous caller.
    subject: str = ""
    #: Groups for ACL filtering: from the verified credential, or (auth off) the caller's x-wikimem-groups.
    groups: tuple[str, ...] = ()
    roles: frozenset[str] = frozenset()

    @property
    def verified(self) -> bool:
        """True when the groups and roles come from a verified credential."""
        return self.kind != ANONYMOUS

    @property
    def who(self) -> str:
        """For logs and the audit trail: 'anonymous', 'jwt:<sub>' or 'apikey:<id>'."""
        return ANONYMOUS if self.kind == ANONYMOUS else f"{self.kind}:{self.subject}"


def anonymous(groups: tuple[str, ...] = ()) -> Identity:
    return Identity(kind=ANONYMOUS, groups=groups)


def string_list(value: object) -> tuple[str, ...]:
    """A claim or file field as sorted unique names: a list of strings, or one string of comma/space separated
    names; anything else is empty."""
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, list | tuple):
        items = [v.strip() for v in value if isinstance(v, str)]
    else:
        return ()
    return tuple(sorted({v for v in items if v}))
