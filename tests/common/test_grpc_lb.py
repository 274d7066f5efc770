"""WIKIMEM_GRPC_LB=round_robin: a peer channel spreads calls over every address of the peer (the pods behind a
headless Service); the default, pick_first, sends them all to one."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest

from wikimem_common.config import ConfigError
from wikimem_common.server import ServerHandle, channel, load_balancing, start
from wikimem_contract.v1 import reranker_pb2, reranker_pb2_grpc


class _Counting(reranker_pb2_grpc.RerankerServicer):
    def __init__(self) -> None:
        self.calls = 0

    def Rerank(self, request: reranker_pb2.RerankRequest, context: grpc.ServicerContext) -> reranker_pb2.RerankResponse:
        self.calls += 1
        return reranker_pb2.RerankResponse(scores=[1.0])


def _register(servicer: _Counting) -> Callable[[grpc.Server], list[str]]:
    def register(server: grpc.Server) -> list[str]:
        reranker_pb2_grpc.add_RerankerServicer_to_server(servicer, server)
        return ["wikimem.v1.Reranker"]

    return register


@pytest.fixture()
def two_replicas() -> Iterator[tuple[str, list[_Counting]]]:
    """Two servers on one port of two loopback addresses, and an address list naming both (as DNS would)."""
    servicers = [_Counting(), _Counting()]
    handles: list[ServerHandle] = []
    try:
        handles.append(start(_register(servicers[0]), "127.0.0.2:0"))
        port = handles[0].address.rsplit(":", 1)[1]
        handles.append(start(_register(servicers[1]), f"127.0.0.1:{port}"))
        yield f"ipv4:127.0.0.1:{port},127.0.0.2:{port}", servicers
    finally:
        for handle in handles:
            handle.stop(0)


def _call(address: str, n: int) -> None:
    with channel(address) as ch:
        stub = reranker_pb2_grpc.RerankerStub(ch)
        for _ in range(n):
            stub.Rerank(reranker_pb2.RerankRequest(query="q", passages=["p"]), timeout=10)


def test_round_robin_spreads_calls_over_every_address(
    two_replicas: tuple[str, list[_Counting]], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, servicers = two_replicas
    monkeypatch.setenv("WIKIMEM_GRPC_LB", "round_robin")
    _call(address, 40)
    # round robin over the READY subchannels: both take a share (exact halves only once both are connected)
    assert sum(s.calls for s in servicers) == 40 and min(s.calls for s in servicers) >= 10, [s.calls for s in servicers]


def test_pick_first_by_default_sticks_to_one_address(
    two_replicas: tuple[str, list[_Counting]], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, servicers = two_replicas
    monkeypatch.delenv("WIKIMEM_GRPC_LB", raising=False)
    _call(address, 20)
    assert sorted(s.calls for s in servicers) == [0, 20]


def test_round_robin_resolves_plain_host_port_through_dns() -> None:
    assert load_balancing("wikimem-memory:50053", "round_robin") == (
        "dns:///wikimem-memory:50053",
        [("grpc.lb_policy_name", "round_robin")],
    )
    # an address with a scheme is kept; pick_first changes nothing
    assert load_balancing("ipv4:10.0.0.1:1,10.0.0.2:1", "round_robin")[0] == "ipv4:10.0.0.1:1,10.0.0.2:1"
    assert load_balancing("dns:///memory:50053", "round_robin")[0] == "dns:///memory:50053"
    assert load_balancing("memory:50053", "pick_first") == ("memory:50053", [])
    assert load_balancing("memory:50053", "") == ("memory:50053", [])
    with pytest.raises(ConfigError, match="WIKIMEM_GRPC_LB='random'"):
        load_balancing("memory:50053", "random")
