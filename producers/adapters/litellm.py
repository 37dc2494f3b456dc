"""LiteLLM adapter: a ``CustomLogger`` that records every completion as ``llm:<provider>``.

Register it with ``litellm.callbacks = [LedgerLogger(ledger)]``. The start is recorded by
the pre-call hook, in the caller's thread and context, so a call made inside another
agent's ``ledger.session()`` or ``@ledger.action`` links to that agent's event; the outcome
(sync or async success/failure hook, often on a LiteLLM worker thread) links ``completes``
to the start through ``litellm_call_id``.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from litellm.integrations.custom_logger import CustomLogger

from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, put, shielded, token_usage

if TYPE_CHECKING:
    from ledgerstream.producers.ledger import Ledger


def _action_type(kwargs: dict[str, Any]) -> str:
    return action_type("llm", kwargs.get("custom_llm_provider") or "call")


def _at(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


class LedgerLogger(LedgerAdapter, CustomLogger):
    """Records LiteLLM calls (start, then success or failure) as linked ledger events."""

    framework = "litellm"

    def __init__(self, ledger: "Ledger", **options: Any) -> None:
        CustomLogger.__init__(self)
        LedgerAdapter.__init__(self, ledger, **options)
        # LiteLLM drops a logger whose class and public str/int/bool attributes equal a registered
        # one's: the agent id keeps the loggers of different agents apart.
        self.agent_id = ledger.agent_id

    @shielded
    def log_pre_api_call(self, model: str, messages: Any, kwargs: dict[str, Any]) -> None:
        payload: dict[str, Any] = {
            "model": model, "provider": kwargs.get("custom_llm_provider"), "call_type": kwargs.get("call_type"),
            "stream": kwargs.get("stream"), "params": kwargs.get("optional_params") or None,
        }
        put(payload, "messages", messages)
        self.start_run(kwargs.get("litellm_call_id"), _action_type(kwargs), payload)

    @shielded
    def log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._success(kwargs, response_obj, end_time)

    @shielded
    def log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._failure(kwargs, end_time)

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self.log_success_event(kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self.log_failure_event(kwargs, response_obj, start_time, end_time)

    def _success(self, kwargs: dict[str, Any], response: Any, end_time: Any) -> None:
        choices = getattr(response, "choices", None)
        payload: dict[str, Any] = {
            "response_id": getattr(response, "id", None), "model": getattr(response, "model", None),
            "finish_reasons": [getattr(c, "finish_reason", None) for c in choices] if choices else None,
            "token_usage": token_usage(getattr(response, "usage", None)),
            "cost": (kwargs.get("standard_logging_object") or {}).get("response_cost"),
        }
        put(payload, "output", [getattr(c, "message", c) for c in choices] if choices else response)
        self.end_run(kwargs.get("litellm_call_id"), payload, at=_at(end_time), fallback_type=_action_type(kwargs))

    def _failure(self, kwargs: dict[str, Any], end_time: Any) -> None:
        error = kwargs.get("exception") or kwargs.get("traceback_exception") or "unknown LiteLLM failure"
        self.end_run(kwargs.get("litellm_call_id"), {"model": kwargs.get("model")}, error=error,
                     at=_at(end_time), fallback_type=_action_type(kwargs))
