"""The faust app of one verifier: a batched agent over ``entries`` + ``checkpoints`` and a
timer that observes the pipeline, both handing CPU work to the runtime's checker thread.

Per batch: verify (checker thread) -> publish the alerts and wait for their delivery ->
save the state (journal + state.json) -> only then does faust ack the batch and, later,
commit its offsets. So committed offsets never pass the saved state, and a crash at any
point re-delivers at most the unsaved batch (skipped by offset, alerts re-published with
the same ``alert_id``).
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import faust

from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, Finding
from ledgerstream.verifier_worker.alerting import encode_alert
from ledgerstream.verifier_worker.runtime import VerifierRuntime
from ledgerstream.verifier_worker.settings import VerifierSettings
from ledgerstream.verifier_worker.transport import ReadCommittedTransport

MAX_RECORD_BYTES = 8 * 1024 * 1024


def build_app(settings: VerifierSettings, runtime: VerifierRuntime) -> faust.App:
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
    checker_thread = ThreadPoolExecutor(1, thread_name_prefix="checker")
    io_thread = ThreadPoolExecutor(1, thread_name_prefix="observer")

    async def on_checker(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(checker_thread, fn, *args)

    async def publish(findings: Sequence[Finding]) -> None:
        now_us = time.time_ns() // 1000
        pending = [await sink.send(key=key, value=value)
                   for key, value in (encode_alert(f, settings.id, now_us) for f in findings)]
        await asyncio.gather(*pending)  # delivered (acks=all) before the state moves past them
        runtime.published(findings)

    @app.agent(source, name="verify")
    async def verify(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            batch = [(roles[e.message.topic], e.message.offset, e.value or b"") for e in events]
            findings = await on_checker(runtime.process, batch)
            if findings:
                await publish(findings)
            await on_checker(runtime.persist)

    @app.timer(settings.status_seconds, name="observe")
    async def observe() -> None:
        obs = await asyncio.get_running_loop().run_in_executor(io_thread, runtime.observe_kafka)
        findings = await on_checker(runtime.assess, obs, time.time())
        if findings:
            await publish(findings)
            await on_checker(runtime.persist)
        await on_checker(runtime.write_status)

    return app
