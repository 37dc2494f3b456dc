"""The faust app of one verifier: a task that moves ledger records to the checker process
and alerts to Kafka, and a timer that observes the pipeline.

Records come from :class:`~ledgerstream.verifier_worker.reader.LedgerReader` (large
``read_committed`` batches, off the event loop), starting at the checker's saved offsets.
The signatures of each batch's entries are checked here, on a thread that holds no GIL
while liboqs works (``core.verify.check_raw_signatures``), and the batch goes to the
checker process with the verdicts: the checker's main thread, the verifier's serial part,
then only decodes, re-hashes and chains, while this mostly idle process uses the other
core (docs/benchmarks-verifier.md). Batches are queued in the checker process in order (it
checks them in order and runs ahead); their alerts are then published in batch order and
awaited (``acks=all``). The
checker process saves its state (state.sqlite + history files) only at points where every finding
so far has been published, so after a crash the unsaved batches are read again and their
alerts re-published with the same ``alert_id``. Up to four batches are in flight, so the
reader keeps filling batches while the checker works. Any failure to check, publish or save
ends the process (exit 70), so that a restart resumes from the saved state rather than from
a half-applied batch.
"""
from __future__ import annotations

import asyncio
import math
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import faust
from faust.app.base import BootStrategy

from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, Finding, check_raw_signatures
from ledgerstream.core.kafka_security import security_settings
from ledgerstream.core.watchdog import Watchdog
from ledgerstream.core.alerting import encode_alert
from ledgerstream.verifier_worker.checker_process import CheckerProcess
from ledgerstream.verifier_worker.liveness import Observation, PipelineObserver
from ledgerstream.verifier_worker.reader import MAX_RECORD_BYTES, LedgerReader, Record
from ledgerstream.verifier_worker.settings import VerifierSettings
IN_FLIGHT = 4          # batches handed to the checker process before waiting for the oldest
EXIT_BATCH_FAILED = 70


class _Boot(BootStrategy):
    """No faust consumer: ledger records come from the LedgerReader (module docstring)."""

    enable_kafka_consumer = False

    def tables(self) -> list:
        return []


class _VerifierApp(faust.App):
    BootStrategy = _Boot


def faust_credentials(props: dict[str, str]) -> "faust.SASLCredentials | None":
    """The verifier's librdkafka credentials for faust's aiokafka producer (SASL without TLS:
    a SASL_SSL deployment also needs ``ssl.ca.location``, which aiokafka takes as a context)."""
    if not props.get("sasl.username"):
        return None
    context = None
    if props.get("security.protocol", "").upper() == "SASL_SSL":
        import ssl

        context = ssl.create_default_context(cafile=props.get("ssl.ca.location"))
    mechanism = props.get("sasl.mechanism") or props.get("sasl.mechanisms") or "PLAIN"
    return faust.SASLCredentials(username=props["sasl.username"], password=props.get("sasl.password"),
                                      ssl_context=context, mechanism=mechanism.upper())


def build_app(settings: VerifierSettings, checker: CheckerProcess, next_offset: dict[str, int],
              alert_key: PrivateKey) -> faust.App:
    """``next_offset``: where the checker's saved state resumes, per role; ``alert_key``: the
    verifier's own key, that signs every alert it publishes."""
    app = _VerifierApp(
        f"{settings.group}.worker", broker=f"kafka://{settings.bootstrap}", store="memory://", web_enabled=False,
        broker_credentials=faust_credentials(security_settings(settings.bootstrap, "verifier")),
        topic_disable_leader=True, datadir=str(settings.state_dir / "faust"),
        producer_acks=-1, producer_max_request_size=MAX_RECORD_BYTES,
    )
    sink = app.topic(settings.topics.alerts, key_serializer="raw", value_serializer="raw")
    io_thread = ThreadPoolExecutor(1, thread_name_prefix="observer")
    read_thread = ThreadPoolExecutor(1, thread_name_prefix="reader")
    signature_thread = ThreadPoolExecutor(1, thread_name_prefix="sigcheck")
    # pyca holds the GIL while it verifies: then the checker process checks every signature
    presign = all(key.verify_many_releases_gil for key in settings.checker.trusted_keys.values())
    reader = LedgerReader(settings, next_offset)
    read_until = dict(next_offset)  # offsets the checker has been handed, per role
    observer = PipelineObserver(settings.bootstrap, settings.topics, settings.signer_group_id)

    def observe_kafka() -> Observation | None:
        try:
            return observer.observe()
        except Exception as exc:  # Kafka down or topic missing: reported as unhealthy, retried
            app.log.warning("cannot observe the pipeline: %s", exc)
            return None

    async def publish(findings: Sequence[Finding]) -> None:
        now_us = time.time_ns() // 1000
        pending = [await sink.send(key=key, value=value)
                   for key, value in (encode_alert(f, settings.id, now_us, alert_key) for f in findings)]
        await asyncio.gather(*pending)  # delivered (acks=all) before the state moves past them
        await checker.published(findings)

    def signature_verdicts(batch: Sequence[Record]) -> dict[int, bool]:
        return check_raw_signatures([(offset, raw) for role, offset, raw in batch if role == ENTRIES],
                                    settings.checker)

    async def queue(batch: Sequence[Record], verdicts: "asyncio.Future[dict[int, bool]] | None",
                    previous: "asyncio.Future | None") -> "asyncio.Future[list[Finding]]":
        """Hand the batch to the checker process once its verdicts are in and the batch
        before it was handed over (the checker process takes calls in order)."""
        known = None if verdicts is None else await verdicts
        if previous is not None:
            await previous
        return checker.process(batch, known)

    async def handle(queued: "asyncio.Future[asyncio.Future[list[Finding]]]", previous: asyncio.Future | None,
                     reached: dict[str, int]) -> None:
        try:
            findings = await (await queued)
            if previous is not None:
                await previous  # alerts leave in batch order
            if findings:
                await publish(findings)
            await loop.run_in_executor(read_thread, reader.commit, reached)
        except Exception:
            app.log.exception("verifier %s: a batch could not be checked, published or saved; exiting", settings.id)
            os._exit(EXIT_BATCH_FAILED)

    def advance(batch: Sequence[Record]) -> dict[str, int]:
        for role, offset, _ in batch:
            if offset >= read_until.get(role, 0):
                read_until[role] = offset + 1
        return dict(read_until)

    loop: asyncio.AbstractEventLoop

    # no progress for watchdog_seconds (a Kafka call or the checker process that never
    # returns): exit with status 4 for the supervisor to restart this verifier (D23)
    limit = settings.watchdog_seconds or math.inf
    reading = Watchdog(limit, f"verifier {settings.id} (reading records)")
    observing = Watchdog(limit, f"verifier {settings.id} (observing and checking)")

    @app.task
    async def verify() -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        in_flight: deque[asyncio.Future] = deque()
        queued: asyncio.Future | None = None
        reading.start()
        observing.start()
        try:
            while True:
                reading.beat("reading records")
                batch = await loop.run_in_executor(read_thread, reader.poll, settings.batch_size,
                                                   settings.batch_seconds, checker.waiting_checkpoints,
                                                   read_until.get(CHECKPOINTS, 0))
                if not batch:
                    continue
                verdicts = loop.run_in_executor(signature_thread, signature_verdicts, batch) if presign else None
                queued = asyncio.ensure_future(queue(batch, verdicts, queued))
                in_flight.append(asyncio.ensure_future(
                    handle(queued, in_flight[-1] if in_flight else None, advance(batch))))
                while in_flight and in_flight[0].done():
                    in_flight.popleft()
                if len(in_flight) > IN_FLIGHT:
                    await in_flight.popleft()
        finally:
            read_thread.submit(reader.close)

    @app.timer(settings.status_seconds, name="observe")
    async def observe() -> None:
        obs = await asyncio.get_running_loop().run_in_executor(io_thread, observe_kafka)
        findings = await checker.assess(obs, time.time())
        if findings:
            await publish(findings)
        await checker.write_status()
        observing.beat("observing the pipeline, assessing and writing the status")

    return app
