"""Tracing configuration: off by default (nothing added to the call path), WIKIMEM_TRACING or the standard
OTEL_TRACES_EXPORTER turn it on, the service name and sampler come from the standard variables."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from wikimem_common import tracing


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("WIKIMEM_TRACING", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER"):
        monkeypatch.delenv(name, raising=False)
    tracing.shutdown()
    yield
    tracing.shutdown()


def test_off_by_default_adds_nothing() -> None:
    tracing.configure_from_env("reader")
    assert not tracing.enabled()
    assert tracing.server_interceptors() == []
    plain = grpc.insecure_channel("127.0.0.1:1")
    assert tracing.intercept_channel(plain) is plain
    plain.close()


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({"WIKIMEM_TRACING": "console"}, True),
        ({"WIKIMEM_TRACING": "off", "OTEL_TRACES_EXPORTER": "otlp"}, False),  # ours wins
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ],
)
def test_modes(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], on: bool) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    tracing.configure_from_env("reader")
    assert tracing.enabled() is on
    assert len(tracing.server_interceptors()) == (1 if on else 0)


def test_service_name_and_sampler_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKIMEM_TRACING", "console")
    tracing.configure_from_env("reader")
    provider = tracing.provider()
    assert provider is not None and provider.resource.attributes["service.name"] == "wikimem-reader"
    assert provider.get_tracer("t").start_span("sampled").is_recording()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "reader-eu")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    tracing.configure_from_env("reader")
    provider = tracing.provider()
    assert provider is not None and provider.resource.attributes["service.name"] == "reader-eu"
    assert not provider.get_tracer("t").start_span("not sampled").is_recording()
