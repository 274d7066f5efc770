"""gRPC metadata keys of the wikimem contract (request headers both sides must spell the same way)."""

from __future__ import annotations

#: Caller groups for ACL filtering, comma-separated ("eng, hr"). Honoured only where authentication is off
#: (the local-dev default); with auth on, groups come from the verified credential and this key is ignored.
GROUPS = "x-wikimem-groups"
#: OAuth2 / OIDC bearer token: `authorization: Bearer <JWT>`.
AUTHORIZATION = "authorization"
#: Service-account API key.
API_KEY = "x-wikimem-api-key"
#: Trailing metadata of a RESOURCE_EXHAUSTED answer: milliseconds after which a retry is likely to be admitted.
RETRY_AFTER_MS = "retry-after-ms"
