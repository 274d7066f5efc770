"""Who is calling (authentication) and what they may do (authorisation): see docs/security.md."""

from .authenticator import Authenticator
from .identity import Identity, Unauthenticated
from .settings import AuthConfig

__all__ = ["AuthConfig", "Authenticator", "Identity", "Unauthenticated"]
