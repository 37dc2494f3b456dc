"""HTTP(S) collectors (``https://URL``): one POST per batch, acknowledged by a 2xx answer.

The body is the batch's lines joined by newlines (NDJSON for the JSON formats), as
Elastic's bulk-less ingest endpoints, Splunk HEC raw and most log collectors accept.
4xx answers other than 408/429 are not retried: the collector rejects the data itself.
"""
from __future__ import annotations

import urllib.error
import urllib.request

from ledgerstream.tools.siem.sinks.interface import Sink, SinkError

_RETRIABLE_4XX = {408, 425, 429}


class HttpSink(Sink):
    def __init__(self, url: str, media_type: str, headers: dict[str, str] | None = None,
                 *, timeout: float = 15.0) -> None:
        self.url, self.timeout = url, timeout
        self.headers = {"Content-Type": media_type, "User-Agent": "ledgerstream-export", **(headers or {})}
        # no proxies from the environment: the collector URL is meant literally
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def write(self, lines: list[str]) -> None:
        body = "".join(line + "\n" for line in lines).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST", headers=self.headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            retriable = exc.code >= 500 or exc.code in _RETRIABLE_4XX
            raise SinkError(f"{self.describe()} answered HTTP {exc.code} {exc.reason}", retriable=retriable) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SinkError(f"{self.describe()} unreachable: {getattr(exc, 'reason', exc)}") from exc

    def describe(self) -> str:
        return self.url.split("?", 1)[0]
