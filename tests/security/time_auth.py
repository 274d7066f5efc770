"""What authentication adds to an Ask on loopback: p50 of the same cached Ask through an orchestrator with auth off
and one with WIKIMEM_AUTH=jwt,apikey (RS256 token, JWKS file cached; API key), interleaved, on one stack; and the
verification alone, in process.

    .venv/bin/python tests/security/time_auth.py [--n 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from e2e.system import start_orchestrator, start_system  # noqa: E402
from security_stack import AUDIENCE, ISSUER, TestIdP, api_key, bearer, put, write_keys  # noqa: E402

from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc  # noqa: E402
from wikimem_orchestrator.auth.apikeys import ApiKeyStore, digest, mint  # noqa: E402
from wikimem_orchestrator.auth.settings import AuthConfig  # noqa: E402
from wikimem_orchestrator.auth.tokens import JwtVerifier  # noqa: E402


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    n = parser.parse_args().n
    import grpc

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        idp = TestIdP(folder)
        key = mint()
        write_keys(folder / "keys.json", [{"id": "bench", "sha256": digest(key), "groups": ["hr"], "roles": ["admin"]}])
        system = start_system(folder / "data")
        auth = start_orchestrator(system, env={
            "WIKIMEM_AUTH": "jwt,apikey", "WIKIMEM_JWKS_FILE": str(idp.jwks_file), "WIKIMEM_JWT_ISSUER": ISSUER,
            "WIKIMEM_JWT_AUDIENCE": AUDIENCE, "WIKIMEM_API_KEYS_FILE": str(folder / "keys.json"),
            "WIKIMEM_AUDIT_LOG": str(folder / "audit.jsonl"),
        })
        try:
            with grpc.insecure_channel(system.address) as plain_ch, grpc.insecure_channel(auth.address) as auth_ch:
                plain, secured = rag_pb2_grpc.RagStub(plain_ch), rag_pb2_grpc.RagStub(auth_ch)
                put(secured, api_key(key), "hr/leave.md", "FMLA leave lasts 12 weeks.", acl=["hr"])
                request = rag_pb2.AskRequest(question="How long does FMLA leave last?")
                token_meta = bearer(idp.token("bench", ["hr"], [], exp=int(time.time()) + 3600))
                cases: dict[str, Callable[[], object]] = {
                    "auth off (x-wikimem-groups)": lambda: plain.Ask(request, metadata=[("x-wikimem-groups", "hr")]),
                    "JWT RS256": lambda: secured.Ask(request, metadata=token_meta),
                    "API key": lambda: secured.Ask(request, metadata=api_key(key)),
                }
                for call in cases.values():  # warm up, and fill the answer cache of both orchestrators
                    for _ in range(20):
                        call()
                samples: dict[str, list[float]] = {name: [] for name in cases}
                for _ in range(n):
                    for name, call in cases.items():
                        samples[name].append(timed(call))
        finally:
            auth.stop(grace=0)
            system.close()
            base = p50_ms(samples["auth off (x-wikimem-groups)"])
            print(f"cached Ask over loopback, p50 of {n} (interleaved):")
            for name, values in samples.items():
                print(f"  {name:<30} {p50_ms(values):7.3f} ms   (+{p50_ms(values) - base:.3f} ms)")
            config = AuthConfig(modes=("jwt",), jwks_file=idp.jwks_file, jwt_issuer=ISSUER, jwt_audience=(AUDIENCE,))
            verifier = JwtVerifier(config)
            token = idp.token("bench", ["hr"], [], exp=int(time.time()) + 3600)
            ec_token = idp.token("bench", ["hr"], [], kid="test-ec-1", alg="ES256", exp=int(time.time()) + 3600)
            store = ApiKeyStore(folder / "keys.json")
            print("verification alone, in process, p50 of 2000:")
            checks: dict[str, Callable[[], object]] = {
                "JwtVerifier.verify RS256": lambda: verifier.verify(token),
                "JwtVerifier.verify ES256": lambda: verifier.verify(ec_token),
                "ApiKeyStore.verify": lambda: store.verify(key),
            }
            for name, check in checks.items():
                print(f"  {name:<30} {p50_ms([timed(check) for _ in range(2000)]):7.3f} ms")


if __name__ == "__main__":
    main()
