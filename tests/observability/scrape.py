"""Reading Prometheus text exposition (from an HTTP /metrics endpoint or the in-process registry)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Samples:
    """name -> [(labels, value)] of one scrape."""

    by_name: dict[str, list[tuple[dict[str, str], float]]]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
        return sum(v for got, v in self.by_name.get(name, []) if all(got.get(k) == w for k, w in labels.items()))

    def labels(self, name: str, label: str) -> set[str]:
        return {got[label] for got, _ in self.by_name.get(name, []) if label in got}

    def has(self, name: str) -> bool:
        return name in self.by_name


def parse(text: str) -> Samples:
    by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            by_name.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return Samples(by_name)


def scrape(address: str, timeout: float = 10.0) -> Samples:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(response.read().decode("utf-8"))


def local() -> Samples:
    """This process's registry (in-process servers)."""
    return parse(generate_latest(REGISTRY).decode("utf-8"))
