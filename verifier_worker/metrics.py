"""Prometheus metrics of one verifier, served by prometheus-client on their own port."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class Metrics:
    def __init__(self, verifier_id: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"verifier": verifier_id}
        self._position = Gauge("ledgerstream_verifier_position", "Next seq expected (entries verified)",
                               ["verifier"], registry=self.registry).labels(**labels)
        self._lag = Gauge("ledgerstream_verifier_lag", "Committed entries not yet verified",
                          ["verifier"], registry=self.registry).labels(**labels)
        self._checkpoint = Gauge("ledgerstream_verifier_checkpoint_size", "Tree size of the last verified checkpoint",
                                 ["verifier"], registry=self.registry).labels(**labels)
        self._healthy = Gauge("ledgerstream_verifier_healthy", "1 when the verifier is consuming and keeping up",
                              ["verifier"], registry=self.registry).labels(**labels)
        self._alerts = Counter("ledgerstream_verifier_alerts", "Alerts raised, by kind",
                               ["verifier", "kind"], registry=self.registry)
        self._verifier_id = verifier_id
        self.url: str | None = None

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> str:
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        self.url = f"http://{host}:{server.server_port}/metrics"
        return self.url

    def update(self, *, position: int, lag: int | None, checkpoint_size: int, healthy: bool) -> None:
        self._position.set(position)
        if lag is not None:
            self._lag.set(lag)
        self._checkpoint.set(checkpoint_size)
        self._healthy.set(1 if healthy else 0)

    def alert(self, kind: str, count: int = 1) -> None:
        self._alerts.labels(verifier=self._verifier_id, kind=kind).inc(count)
