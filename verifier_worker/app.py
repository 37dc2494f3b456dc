"""The faust app of one verifier: a batched agent over ``entries`` + ``checkpoints`` and a
timer that observes the pipeline; the checking itself happens in the checker process.

Each batch is queued in the checker process at once (it checks batches in order and
runs ahead of faust); its alerts are then published in batch order and awaited
(``acks=all``). The checker process saves its state (journal + state.json) only at points
where every finding so far has been published. Up to four batches are in flight, so faust
keeps filling batches while the checker works; faust therefore acks (and later commits) a
batch before it is saved. That is safe because every start first
moves the group's offsets back to the saved state (``offsets.py``): after a crash the
unsaved batches are delivered again and their alerts re-published with the same
``alert_id``. Any failure to check, publish or save ends the process (exit 70), so that a
restart resumes from the saved state rather than from a half-applied batch.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import faust

from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, Finding
from ledgerstream.verifier_worker.alerting import encode_alert
from ledgerstream.verifier_worker.checker_process import CheckerProcess
from ledgerstream.verifier_worker.liveness import Observation, PipelineObserver
from ledgerstream.verifier_worker.settings import VerifierSettings
from ledgerstream.verifier_worker.transport import ReadCommittedTransport

MAX_RECORD_BYTES = 8 * 1024 * 1024
IN_FLIGHT = 4          # batches handed to the checker process before waiting for the oldest
EXIT_BATCH_FAILED = 70


def build_app(settings: VerifierSettings, checker: CheckerProcess) -> faust.App:
    app = faust.App(
        settings.group, broker=f"kafka://{settings.bootstrap}", store="memory://", web_enabled=False,
        topic_disable_leader=True, consumer_auto_offset_reset="earliest",
        datadir=str(settings.state_dir / "faust"), consumer_max_fetch_size=MAX_RECORD_BYTES,
        broker_session_timeout=10.0, broker_heartbeat_interval=3.0, broker_commit_interval=1.0,
        producer_acks=-1, producer_max_request_size=MAX_RECORD_BYTES,
    )
    app.transport = ReadCommittedTransport(app.conf.broker_consumer, app)
    source = app.topic(settings.topics.entries, settings.topics.checkpoints,
                       key_serializer="raw", value_serializer="raw")
    sink = app.topic(settings.topics.alerts, key_serializer="raw", value_serializer="raw")
    roles = {settings.topics.entries: ENTRIES, settings.topics.checkpoints: CHECKPOINTS}
    io_thread = ThreadPoolExecutor(1, thread_name_prefix="observer")
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
                   for key, value in (encode_alert(f, settings.id, now_us) for f in findings)]
        await asyncio.gather(*pending)  # delivered (acks=all) before the state moves past them
        await checker.published(findings)

    async def handle(checked: "asyncio.Future[list[Finding]]", previous: asyncio.Future | None) -> None:
        try:
            findings = await checked
            if previous is not None:
                await previous  # alerts leave in batch order
            if findings:
                await publish(findings)
        except Exception:
            app.log.exception("verifier %s: a batch could not be checked, published or saved; exiting", settings.id)
            os._exit(EXIT_BATCH_FAILED)

    @app.agent(source, name="verify")
    async def verify(stream: faust.StreamT) -> None:
        in_flight: deque[asyncio.Future] = deque()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            batch = [(roles[e.message.topic], e.message.offset, e.value or b"") for e in events]
            checked = checker.process(batch)  # queued in the checker process right away
            in_flight.append(asyncio.ensure_future(handle(checked, in_flight[-1] if in_flight else None)))
            while in_flight and in_flight[0].done():
                in_flight.popleft()
            if len(in_flight) > IN_FLIGHT:
                await in_flight.popleft()

    @app.timer(settings.status_seconds, name="observe")
    async def observe() -> None:
        obs = await asyncio.get_running_loop().run_in_executor(io_thread, observe_kafka)
        findings = await checker.assess(obs, time.time())
        if findings:
            await publish(findings)
        await checker.write_status()

    return app
