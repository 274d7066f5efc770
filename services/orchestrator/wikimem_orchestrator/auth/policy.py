"""What an identity may do beyond reading what its groups may read (reads are filtered by the memory itself).

- Write a collection (auth on): one of the caller's roles or groups is named for it in WIKIMEM_WRITERS (or for
  '*'), or the caller is an admin. Auth off: anyone (the local-dev default).
- Overwrite, delete or change the ACL of an existing restricted document: the caller can read it (one of its
  groups is in the document's ACL) or is an admin; see documents.py for how that is checked without telling an
  outsider that the document exists.
- Give a document an ACL (auth on): the caller is in one of the new ACL's groups, or an admin (no one writes a
  page they could not read).
- Choose a generative reader (local-llm, openai): a role in WIKIMEM_GENERATIVE_ROLES (auth on), or
  WIKIMEM_GENERATIVE_READERS=allowed (auth off).
"""

from __future__ import annotations

from collections.abc import Sequence

from wikimem_common.errors import PermissionDenied

from .identity import Identity
from .settings import CHEAP_READERS, AuthConfig

DEFAULT_COLLECTION = "default"


class Policy:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config

    def is_admin(self, identity: Identity) -> bool:
        return identity.verified and bool(identity.roles & self.config.admin_roles)

    def require_writer(self, identity: Identity, collection: str) -> None:
        if not self.config.enabled or self.is_admin(identity):
            return
        name = collection or DEFAULT_COLLECTION
        allowed = self.config.writers.get(name, frozenset()) | self.config.writers.get("*", frozenset())
        if not allowed & (identity.roles | set(identity.groups)):
            raise PermissionDenied(
                f"{identity.who} may not write collection {name!r}: it needs one of the roles or groups "
                f"{', '.join(sorted(allowed)) or '(none configured)'} (WIKIMEM_WRITERS)"
            )

    def require_acl_member(self, identity: Identity, acl: Sequence[str]) -> None:
        if not self.config.enabled or not acl or self.is_admin(identity):
            return
        if not set(acl) & set(identity.groups):
            raise PermissionDenied(
                f"{identity.who} may not restrict a document to {', '.join(sorted(acl))}: it is in none of those "
                "groups (it could not read the document afterwards)"
            )

    def require_reader(self, identity: Identity, reader: str) -> None:
        if reader.strip().lower() in CHEAP_READERS:
            return
        if not self.config.enabled:
            if self.config.generative_readers == "denied":
                raise PermissionDenied(f"reader {reader!r} is disabled here (WIKIMEM_GENERATIVE_READERS=denied)")
            return
        if not identity.roles & self.config.generative_roles:
            raise PermissionDenied(
                f"{identity.who} may not use the generative reader {reader!r}: it needs one of the roles "
                f"{', '.join(sorted(self.config.generative_roles))}"
            )
