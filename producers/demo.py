"""A realistic multi-agent workload, driven only through the public API.

A planner agent works through tasks, one session each: it plans with an LLM, delegates
to worker agents (agent-to-agent calls: the workers' events link to the planner's call
through the context propagation), and records a routing decision. Workers search, fetch
pages, summarise with an LLM, read and write data; a policy denies deletions, so the
occasional ``data:delete:*`` attempt is recorded as denied. Exactly ``events`` events are
recorded in total: every step first takes its share from a budget.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from ledgerstream.core.config import Topics
from ledgerstream.core.errors import LedgerstreamError
from ledgerstream.producers.errors import PolicyDenied
from ledgerstream.producers.ledger import Ledger, connect
from ledgerstream.producers.policy import Policy, Rule

TOPICS = ["invoice reconciliation", "vendor due diligence", "churn analysis", "incident summary",
          "contract renewal", "security questionnaire", "pricing review", "onboarding checklist"]
SITES = ["https://example.com/docs", "https://example.org/api", "https://example.net/status"]


class DemoError(LedgerstreamError):
    """The workload could not be delivered (Kafka unreachable or too slow)."""


class Budget:
    """Exactly ``total`` events: each recording step takes its events before it runs."""

    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, n: int = 1) -> bool:
        if self.left < n:
            return False
        self.left -= n
        return True


def agent_ids(n_agents: int, run_id: str | None = None) -> list[str]:
    prefix = f"demo-{run_id}-" if run_id else "demo-"
    return [prefix + "planner"] + [f"{prefix}worker-{i}" for i in range(1, n_agents)]


@dataclass
class Worker:
    ledger: Ledger
    budget: Budget
    rng: random.Random

    def __post_init__(self) -> None:
        led = self.ledger
        self.search = led.action("tool:search")(self._search)
        self.http_get = led.action("tool:http_get", redact=["args.headers.authorization"])(self._http_get)
        self.summarise = led.action("llm:chat")(self._llm)
        self.handle = led.action("agent:handle")(self._handle)

    def _search(self, query: str, top_k: int = 3) -> list[dict[str, Any]]:
        return [{"title": f"{query} #{i}", "url": f"{self.rng.choice(SITES)}/{i}", "score": round(1 - i / 10, 2)}
                for i in range(top_k)]

    def _http_get(self, url: str, headers: dict[str, str]) -> dict[str, Any]:
        return {"status": 200, "bytes": self.rng.randint(2_000, 90_000), "content_type": "text/html"}

    def _llm(self, model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        prompt = sum(len(m["content"].split()) for m in messages) * 4
        completion = self.rng.randint(40, 400)
        return {"model": model, "prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion, "finish_reason": "stop", "text": "Summary: ..."}

    def _handle(self, task: str, step: int) -> dict[str, Any]:
        found: list[dict[str, Any]] = []
        if self.budget.take():
            found = self.search(task)
        if found and self.budget.take():
            self.http_get(found[0]["url"], headers={"authorization": "Bearer demo-secret"})
        if self.budget.take():
            self.summarise("demo-llm", [{"role": "user", "content": f"Summarise the findings on {task}"}])
        if step % 3 == 0 and self.budget.take():
            self.ledger.emit("data:write:notes", {"task": task, "rows": self.rng.randint(1, 20)})
        elif step % 7 == 0 and self.budget.take():
            try:
                self.ledger.emit("data:delete:stale_notes", {"task": task, "older_than_days": 30})
            except PolicyDenied:
                pass  # recorded as denied; the worker carries on
        elif step % 2 == 0 and self.budget.take():
            self.ledger.emit("data:read:customers", {"segment": task.split()[0], "limit": 50})
        return {"task": task, "sources": len(found)}


def run_demo(n_agents: int, n_events: int, *, bootstrap: str, topics: Topics | None = None,
             run_id: str | None = None, spool_dir: Any = None, timeout: float = 120.0, seed: int = 7,
             progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Record exactly ``n_events`` events across ``n_agents`` agents and wait until Kafka
    acknowledged all of them; DemoError if it does not within ``timeout`` seconds."""
    if n_agents < 1 or n_events < 0:
        raise ValueError("need at least one agent and a non-negative number of events")
    start = time.monotonic()
    rng = random.Random(seed)
    budget = Budget(n_events)
    policy = Policy([Rule("data:delete:*", "deny", reason="demo policy: deletions need a human")])
    ids = agent_ids(n_agents, run_id)
    ledgers = [connect(agent_id, bootstrap, topics=topics, spool_dir=spool_dir, policy=policy) for agent_id in ids]
    planner, workers = ledgers[0], [Worker(led, budget, rng) for led in ledgers[1:]]
    report = progress or (lambda phase, done, total: None)
    try:
        plan = planner.action("llm:chat")(lambda model, prompt: {
            "model": model, "prompt_tokens": len(prompt.split()) * 4, "completion_tokens": rng.randint(20, 200),
            "plan": ["research", "summarise", "report"]})

        @planner.action("agent:call")
        def delegate(worker_id: str, task: str, step: int) -> dict[str, Any]:
            return workers[ids.index(worker_id) - 1].handle(task, step)

        step = 0
        while budget.left > 0:
            step += 1
            task = rng.choice(TOPICS)
            with planner.session(f"task-{step}"):
                if budget.take():
                    plan("demo-llm", f"Plan the work for: {task}")
                if workers and budget.take(2):  # the planner's call and the worker's handle
                    delegate(ids[1 + step % len(workers)], task, step)
                if budget.take():
                    planner.emit("decision:route", {"task": task, "next": "report" if step % 2 else "review",
                                                    "confidence": round(rng.random(), 3)})
            report("recording", n_events - budget.left, n_events)
        emitted = sum(led.stats()["emitted"] for led in ledgers)
        deadline = time.monotonic() + timeout
        while True:
            undelivered = sum(led.flush(0.2) for led in ledgers)
            report("delivering", emitted - undelivered, emitted)
            if undelivered == 0:
                break
            if time.monotonic() > deadline:
                raise DemoError(f"{undelivered} of {emitted} events not acknowledged by Kafka at {bootstrap} "
                                f"within {timeout:.0f}s; they stay in the spool ('ledgerstream sync' sends them)")
        return {"agents": ids, "events": emitted, "delivered": emitted - undelivered,
                "links": sum(led.stats()["links"] for led in ledgers),
                "seconds": round(time.monotonic() - start, 3)}
    finally:
        for led in ledgers:
            led.close(timeout=2.0)
