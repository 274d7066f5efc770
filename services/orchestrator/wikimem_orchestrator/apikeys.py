"""`python -m wikimem_orchestrator.apikeys new|revoke ...`: mint and revoke API keys (auth/apikeys.py)."""

from .auth.apikeys import main

if __name__ == "__main__":
    raise SystemExit(main())
