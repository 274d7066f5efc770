"""Added latency per Ask of TLS (public port) + mutual TLS (between the services) on loopback, against plaintext.

    nice -n 10 .venv/bin/python -m bench.tls_overhead [--asks 50] [--json OUT]

Starts two `wikimem serve` stacks side by side (process per service): one all plaintext (WIKIMEM_INTERNAL_TLS=0),
one with a generated public certificate and the generated internal PKI; ingests examples/wiki into both; then asks
the same questions alternately of one and the other (so machine noise hits both alike), uncached (the full
embed → search → rerank → read path: five TLS hops) and cached (the public hop only). Also times a new connection
(channel + first health check), where the handshakes are, and one internal hop without compute (Embedder.Info).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wikimem import WikimemClient
from wikimem_common import tls
from wikimem_contract.v1 import embedder_pb2, embedder_pb2_grpc
from wikimem_launcher.launcher import ProcessStack

REPO = Path(__file__).resolve().parents[1]
WIKI = REPO / "examples" / "wiki"
QUESTIONS = [
    "What is the VPN client called?",
    "When is VPN support available?",
    "How many vacation days do employees get?",
    "Who approves expense reports?",
    "What should I do in a security incident?",
    "How do I set up my laptop?",
    "Where are the offices?",
    "What does the on-call engineer do?",
    "What happens during onboarding?",
    "How do I book travel?",
]


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def start(root: Path, secure: bool) -> tuple[ProcessStack, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIKIMEM_")}
    client: dict[str, Any] = {}
    if secure:
        public = tls.generate_dev_pki(root / "public", names=("public",))
        env.update(WIKIMEM_TLS_CERT=str(public.pairs["public"].cert), WIKIMEM_TLS_KEY=str(public.pairs["public"].key))
        client["ca_file"] = str(public.ca)
    stack = ProcessStack(
        address=free_address(),
        data_dir=root / "data",
        log_dir=root / "logs",
        env=env,
        tls_dir=root / "data" / "tls" if secure else None,
        start_timeout=300,
    )
    stack.start()
    return stack, client


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3),
        "p90": round(percentile(values, 0.9), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def new_connection_ms(address: str, ca_file: str | None, n: int = 20) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        if ca_file:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(Path(ca_file).read_bytes()))
        else:
            channel = grpc.insecure_channel(address)
        with channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def per_call_ms(stacks: dict[str, tuple[ProcessStack, dict[str, Any]]], root: Path, n: int = 300) -> dict[str, Any]:
    """One internal hop without compute (Embedder.Info), plaintext vs mutual TLS, alternated: the transport's cost."""
    channels = {}
    for name, (stack, _) in stacks.items():
        address = stack.children["embedder"].address
        if name == "plaintext":
            channels[name] = grpc.insecure_channel(address)
        else:
            pki = root / name / "data" / "tls"
            config = tls.TlsConfig(
                internal_ca=pki / "ca.pem", internal=tls.KeyPair(pki / "launcher.pem", pki / "launcher.key")
            )
            credentials = tls.channel_credentials(config)
            assert credentials is not None
            channels[name] = grpc.secure_channel(address, credentials)
    times: dict[str, list[float]] = {name: [] for name in channels}
    stubs = {name: embedder_pb2_grpc.EmbedderStub(channel) for name, channel in channels.items()}
    for i in range(n + 20):
        for name in list(stubs) if i % 2 == 0 else list(reversed(stubs)):
            t0 = time.perf_counter()
            stubs[name].Info(embedder_pb2.InfoRequest(), timeout=10)
            if i >= 20:  # after a warm-up
                times[name].append((time.perf_counter() - t0) * 1000)
    for channel in channels.values():
        channel.close()
    out: dict[str, Any] = {name: summary(values) for name, values in times.items()}
    out["added_p50_ms"] = round(statistics.median(times["tls+mtls"]) - statistics.median(times["plaintext"]), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asks", type=int, default=50, help="asks per stack and mode (default 50)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wikimem-tls-bench-") as tmp:
        stacks = {}
        try:
            for name, secure in (("plaintext", False), ("tls+mtls", True)):
                stacks[name] = start(Path(tmp) / name, secure)
            clients = {
                name: WikimemClient(stack.public_address, timeout=120, **opts) for name, (stack, opts) in stacks.items()
            }
            docs = sorted(WIKI.glob("*.md"))
            for client in clients.values():
                for path in docs:
                    client.put_document(path.name, path.read_text(encoding="utf-8"), source=str(path))
                for q in QUESTIONS:  # warm up: models, channels, caches of the embedder
                    client.ask(q, no_cache=True)
            results: dict[str, Any] = {"asks": args.asks, "documents": len(docs)}
            for mode, no_cache in (("uncached", True), ("cached", False)):
                if not no_cache:
                    for client in clients.values():
                        for q in QUESTIONS:  # every timed cached Ask is a hit
                            client.ask(q)
                times: dict[str, list[float]] = {name: [] for name in clients}
                for i in range(args.asks):
                    question = QUESTIONS[i % len(QUESTIONS)]
                    order = list(clients) if i % 2 == 0 else list(reversed(clients))
                    for name in order:
                        t0 = time.perf_counter()
                        clients[name].ask(question, no_cache=no_cache)
                        times[name].append((time.perf_counter() - t0) * 1000)
                results[mode] = {name: summary(values) for name, values in times.items()}
                plain_ms, secure_ms = times["plaintext"], times["tls+mtls"]
                results[mode]["added_p50_ms"] = round(statistics.median(secure_ms) - statistics.median(plain_ms), 2)
                results[mode]["paired_median_diff_ms"] = round(
                    statistics.median(s - p for s, p in zip(secure_ms, plain_ms, strict=True)), 2
                )
            results["embedder_info_call"] = per_call_ms(stacks, Path(tmp))
            results["new_connection"] = {
                name: summary(new_connection_ms(stack.public_address, opts.get("ca_file")))
                for name, (stack, opts) in stacks.items()
            }
            for client in clients.values():
                client.close()
        finally:
            for stack, _ in stacks.values():
                stack.stop()
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
