"""Shared core of the framework adapters: framework runs become linked ledger events.

Every supported framework reports its work as *runs* with an id and a parent id (LangChain
runs, CrewAI scoped events, Haystack and Agents SDK spans, LiteLLM calls). An adapter records
two events per run:

* at the start, the inputs; linked ``caused_by`` the start event of the parent run;
* at the end, duration, output, token usage or the error; linked ``completes`` its start.

Starts are recorded before anything the run causes, so every link points at an event that
was recorded earlier and a whole framework run is one connected graph under its root run.

Adapters observe. They record with :meth:`Ledger.record`, not ``emit``: a callback cannot veto
the framework's call, so a policy verdict written there would claim a block that never
happened (and waiting for approvers would stall the framework). Enforce with
``@ledger.action`` around the tool instead. Redaction and hash-only apply as for ``emit``.

An adapter never raises into the framework: each hook catches its own failure, counts it
(``adapter.errors`` and the ledger's ``stats()['errors']``) and logs the first one. The
framework's own exceptions are never caught here.
"""
from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, TypeVar

from ledgerstream.producers.action import jsonable
from ledgerstream.producers.context import Link

if TYPE_CHECKING:
    from ledgerstream.producers.ledger import Ledger

log = logging.getLogger("ledgerstream.adapters")

CAUSED_BY = "caused_by"    # a run's start -> the start of the run that caused it
COMPLETES = "completes"    # a run's end -> its own start
MAX_TEXT = 4096            # characters kept of one string in a payload
MAX_ITEMS = 100            # elements kept of one list in a payload
MAX_RUNS = 10_000          # run ids remembered for linking (oldest forgotten first)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")

F = TypeVar("F", bound=Callable[..., Any])


def action_type(kind: str, name: Any = None) -> str:
    """``kind:name`` with the name made a valid action-type segment (``tool:web_search``)."""
    segment = _UNSAFE.sub("_", str(name or "")).strip("_")[:100]
    return f"{kind}:{segment or 'unnamed'}"


def clip(value: Any) -> Any:
    """A JSON-safe copy of ``value`` with long strings and lists cut, so that one huge prompt
    or result cannot push an event past the ledger's payload limit."""
    return _clip(jsonable(value))


def _clip(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else f"{value[:MAX_TEXT]}...[{len(value) - MAX_TEXT} more]"
    if isinstance(value, dict):
        return {k: _clip(v) for k, v in value.items()}
    if isinstance(value, list):
        kept = [_clip(v) for v in value[:MAX_ITEMS]]
        return kept + [f"...[{len(value) - MAX_ITEMS} more]"] if len(value) > MAX_ITEMS else kept
    return value


def put(payload: dict[str, Any], key: str, value: Any) -> None:
    """Set ``payload[key]`` (clipped) and, for text and structures, ``payload[key + '_bytes']``
    (the full JSON size); ``None`` is left out. Redacting ``key`` keeps the size."""
    if value is None:
        return
    safe = jsonable(value)
    payload[key] = _clip(safe)
    if isinstance(safe, (str, list, dict)):
        payload[f"{key}_bytes"] = len(json.dumps(safe, ensure_ascii=False, separators=(",", ":")).encode())


def token_usage(usage: Any) -> dict[str, int] | None:
    """Token counts in one shape (input/output/total) from any framework's usage record."""
    if usage is None:
        return None
    if not isinstance(usage, Mapping):
        dump = getattr(usage, "model_dump", None)
        usage = dump() if callable(dump) else getattr(usage, "__dict__", {})
    counts = {
        "input_tokens": usage.get("input_tokens", usage.get("prompt_tokens")),
        "output_tokens": usage.get("output_tokens", usage.get("completion_tokens")),
        "total_tokens": usage.get("total_tokens"),
    }
    counts = {k: int(v) for k, v in counts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if "total_tokens" not in counts and {"input_tokens", "output_tokens"} <= counts.keys():
        counts["total_tokens"] = counts["input_tokens"] + counts["output_tokens"]
    return counts or None


def error_record(error: Any) -> dict[str, str]:
    """``{"type", "message"}`` for an exception, or for the error text/record a framework passes."""
    if isinstance(error, BaseException):
        return {"type": type(error).__qualname__, "message": clip(str(error))}
    if isinstance(error, Mapping):
        return {"type": str(error.get("type") or "Error"), "message": clip(str(error.get("message") or error))}
    return {"type": "Error", "message": clip(str(error))}


def shielded(method: F) -> F:
    """Run an adapter hook so that nothing it raises reaches the framework."""
    @functools.wraps(method)
    def wrapper(self: "LedgerAdapter", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            self._failed(method.__name__, exc)
            return None

    return wrapper  # type: ignore[return-value]


@dataclass
class _Run:
    event_id: str
    action_type: str
    started: float      # seconds since the epoch
    ended: bool = False


class LedgerAdapter:
    """Maps a framework's runs to ledger events; subclasses translate the callbacks.

    ``session`` puts every event in that session (else the enclosing ``ledger.session()``
    where the framework calls back in the caller's context); ``hash_only`` and ``redact``
    are passed to the ledger for every event, as with ``emit``.
    """

    framework = "generic"

    def __init__(self, ledger: "Ledger", *, session: str | None = None, hash_only: bool | None = None,
                 redact: Iterable[str] | None = None) -> None:
        self.ledger = ledger
        self.session = session
        self.hash_only = hash_only
        self.redact = tuple(redact or ())
        self._errors = 0
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, _Run] = OrderedDict()

    @property
    def errors(self) -> int:
        """How many events this adapter failed to record (the framework went on regardless)."""
        return self._errors

    # --- the three things a framework hook does ----------------------------------------------
    def start_run(self, run_id: Any, action: str, payload: dict[str, Any], *, parent_id: Any = None,
                  at: float | None = None) -> str:
        """Record the start of run ``run_id``, linked to the start of ``parent_id`` if known."""
        at = time.time() if at is None else at
        parent = self.event_of(parent_id)
        links = (Link(self.ledger.agent_id, parent, CAUSED_BY),) if parent else ()
        payload = {"framework": self.framework, "phase": "start", "run_id": _id(run_id),
                   "parent_run_id": _id(parent_id), **payload}
        event_id = self._record(action, payload, links, at)
        with self._lock:
            self._runs[str(run_id)] = _Run(event_id, action, at)
            while len(self._runs) > MAX_RUNS:
                self._runs.popitem(last=False)
        return event_id

    def end_run(self, run_id: Any, payload: dict[str, Any] | None = None, *, error: Any = None,
                at: float | None = None, fallback_type: str | None = None) -> str | None:
        """Record the end of run ``run_id`` (once), linked to its start.

        A run whose start was not seen is recorded under ``fallback_type`` without a link,
        or not at all without one.
        """
        at = time.time() if at is None else at
        with self._lock:
            run = self._runs.get(str(run_id))
            if run is not None:
                if run.ended:   # some frameworks report an outcome through two hooks
                    return None
                run.ended = True
        action = run.action_type if run else fallback_type
        if action is None:
            log.debug("%s adapter: end of unknown run %s ignored", self.framework, run_id)
            return None
        body: dict[str, Any] = {"framework": self.framework, "phase": "end" if error is None else "error",
                                "run_id": _id(run_id)}
        if run is not None:
            body["duration_ms"] = round(max(at - run.started, 0.0) * 1000, 3)
        body.update(payload or {})
        if error is not None:
            body["error"] = error_record(error)
        links = (Link(self.ledger.agent_id, run.event_id, COMPLETES),) if run else ()
        return self._record(action, body, links, at)

    def record_event(self, action: str, payload: dict[str, Any], *, parent_id: Any = None) -> str:
        """Record a point event (no duration, e.g. an agent's decision) caused by ``parent_id``."""
        parent = self.event_of(parent_id)
        links = (Link(self.ledger.agent_id, parent, CAUSED_BY),) if parent else ()
        body = {"framework": self.framework, "phase": "event", "parent_run_id": _id(parent_id), **payload}
        return self._record(action, body, links, time.time())

    def event_of(self, run_id: Any) -> str | None:
        """The ledger event id of the start of run ``run_id``, if it was recorded."""
        if run_id is None:
            return None
        with self._lock:
            run = self._runs.get(str(run_id))
        return run.event_id if run else None

    # --- internals ------------------------------------------------------------------------------
    def _record(self, action: str, payload: dict[str, Any], links: tuple[Link, ...], at: float) -> str:
        body = {k: v for k, v in payload.items() if v is not None}
        try:
            prepared = self.ledger.prepare(body, redact=self.redact, hash_only=self.hash_only)
        except (TypeError, ValueError) as exc:   # e.g. too large: keep the event and its links
            keep: dict[str, Any] = {k: body[k] for k in ("framework", "phase", "run_id", "parent_run_id") if k in body}
            prepared = self.ledger.prepare({**keep, "unrecordable": clip(str(exc))}, hash_only=self.hash_only)
        return self.ledger.record(action, prepared, links=links, session=self.session,
                                  occurred_at=int(at * 1_000_000))

    def _failed(self, hook: str, exc: Exception) -> None:
        """Count a recording failure; log the first with its traceback, the rest at debug."""
        with self._lock:
            self._errors += 1
            first = self._errors == 1
        try:
            self.ledger.count_error()
        except Exception:
            pass
        if first:
            log.warning("ledgerstream %s adapter could not record (%s); the framework call goes on, "
                        "further failures are counted in stats()['errors']", self.framework, hook, exc_info=exc)
        else:
            log.debug("ledgerstream %s adapter could not record (%s): %r", self.framework, hook, exc)


def _id(value: Any) -> str | None:
    return None if value is None else str(value)
