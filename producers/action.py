"""``@ledger.action(...)``: authorise, run and record one call of a sync or async function.

Per call: the arguments are bound to the signature and made JSON-safe; the policy is
evaluated *before* the function runs (a denial is recorded and raised, an approval waited
for); the function runs inside a scope of this agent whose latest event is the id reserved
for this call, so other agents called from inside link to it; afterwards one event records
the arguments, the result (or the exception's type and message) and ``duration_ms``. The
function's own exceptions propagate unchanged, and a failure to *record* never reaches the
agent (it is logged and counted in ``stats()['errors']``).

With approvals, the approvers sign the arguments before anything runs, so that call leaves
two events: the approved request (decision ``approved``, the approvals) and the outcome,
which links to it with relation ``approved_by``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ledgerstream.producers import context
from ledgerstream.producers.context import Link
from ledgerstream.producers.policy import REQUIRE_APPROVAL
from ledgerstream.producers.redact import Redactor
from ledgerstream.producers.uuid7 import uuid7

if TYPE_CHECKING:
    from ledgerstream.producers.ledger import Ledger

log = logging.getLogger("ledgerstream.producer")

MAX_DEPTH = 12
MAX_TEXT = 4096
_SKIP_PARAMS = ("self", "cls")


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe view of arbitrary Python values (anything else becomes its repr)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -(2**53) < value < 2**53 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= MAX_DEPTH:
        return _text(repr(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value), depth + 1)
    dump = getattr(value, "model_dump", None)  # pydantic models, common in agent frameworks
    if callable(dump):
        try:
            return jsonable(dump(), depth + 1)
        except Exception:
            pass
    return _text(repr(value))


def _text(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"...[{len(text) - MAX_TEXT} more]"


def bind_arguments(sig: inspect.Signature | None, args: tuple, kwargs: dict) -> dict[str, Any]:
    if sig is None:
        return {"args": jsonable(list(args)), "kwargs": jsonable(kwargs)}
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:  # the call itself will fail the same way; record what was passed
        return {"args": jsonable(list(args)), "kwargs": jsonable(kwargs)}
    bound.apply_defaults()
    return {k: jsonable(v) for k, v in bound.arguments.items() if k not in _SKIP_PARAMS}


class _Call:
    """One call of a decorated function, from authorisation to its record."""

    def __init__(self, ledger: "Ledger", action_type: str, redactor: Redactor, hash_only: bool | None,
                 arguments: dict[str, Any]) -> None:
        self.ledger = ledger
        self.action_type = action_type
        self.redactor = redactor
        self.hash_only = hash_only
        self.arguments = arguments
        self.where = context.placement(ledger.agent_id)
        self.policy: dict[str, Any] | None = None
        self.links: tuple[Link, ...] = ()
        self.event_id = uuid7()
        self.span_id = context.new_span_id()
        self._scope: Any = None

    def needs_approval(self) -> bool:
        policy = self.ledger.policy
        return policy is not None and policy.evaluate(self.action_type).decision == REQUIRE_APPROVAL

    def authorize(self) -> None:
        """Policy before the call: raises PolicyDenied (recorded); records an approval."""
        prepared = self._prepare({"args": self.arguments})
        policy, approvals = self.ledger.authorize(self.action_type, prepared, self.event_id, self.where)
        if approvals:
            self.ledger.record(self.action_type, prepared, event_id=self.event_id, where=self.where,
                               policy=policy, approvals=approvals, span_id=self.span_id)
            self.links = (Link(self.ledger.agent_id, self.event_id, "approved_by"),)
            self.policy = {"decision": "allow", "rule": policy["rule"], "reason": f"approved in {self.event_id}"}
            self.event_id, self.span_id = uuid7(), context.new_span_id()
        else:
            self.policy = policy

    def start(self) -> None:
        self.started = time.time_ns() // 1000
        self.t0 = time.perf_counter()
        self._scope = context.enter(self.ledger.agent_id, span_id=self.span_id, last_event_id=self.event_id)

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        """Leave the scope and record the outcome; never raises."""
        duration_ms = round((time.perf_counter() - self.t0) * 1000, 3)
        context.leave(*self._scope)
        try:
            payload: dict[str, Any] = {"args": self.arguments}
            if error is None:
                payload["result"] = jsonable(result)
            else:
                payload["error"] = {"type": type(error).__qualname__, "message": _text(str(error))}
            payload["duration_ms"] = duration_ms
            self.ledger.record(self.action_type, self._prepare(payload), event_id=self.event_id,
                               where=self.where, links=self.links, policy=self.policy,
                               occurred_at=self.started, span_id=self.span_id)
        except Exception:
            self.ledger.count_error()
            log.exception("could not record %s call %s", self.action_type, self.event_id)

    def _prepare(self, payload: dict[str, Any]) -> Any:
        try:
            return self.ledger.prepare(payload, redact=self.redactor.paths, hash_only=self.hash_only)
        except (TypeError, ValueError) as exc:  # e.g. too large: keep the event, drop the detail
            return self.ledger.prepare({"unrecordable": _text(str(exc))}, hash_only=self.hash_only)


def decorate(ledger: "Ledger", fn: Callable[..., Any], action_type: str, redactor: Redactor,
             hash_only: bool | None) -> Callable[..., Any]:
    try:
        sig: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            call = _Call(ledger, action_type, redactor, hash_only, bind_arguments(sig, args, kwargs))
            if call.needs_approval():
                await asyncio.to_thread(call.authorize)  # waiting for approvers must not block the loop
            else:
                call.authorize()
            call.start()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                call.finish(error=exc)
                raise
            call.finish(result=result)
            return result

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _Call(ledger, action_type, redactor, hash_only, bind_arguments(sig, args, kwargs))
        call.authorize()
        call.start()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            call.finish(error=exc)
            raise
        call.finish(result=result)
        return result

    return wrapper
