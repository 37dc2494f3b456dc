"""LangChain adapter: a langchain-core callback handler that records runs in the ledger.

Pass it as a callback (``config={"callbacks": [handler]}``) to any runnable, chain, chat
model, tool or agent executor. Chains record ``chain:<name>``, models ``llm:<provider>``
(LangChain's ``ls_provider``), tools ``tool:<name>``, agent decisions ``agent:step`` and
``agent:finish``; ``parent_run_id`` gives the ``caused_by`` links.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, put, shielded, token_usage

if TYPE_CHECKING:
    from langchain_core.agents import AgentAction, AgentFinish
    from langchain_core.outputs import LLMResult

    from ledgerstream.producers.ledger import Ledger


def _message(message: Any) -> Any:
    """The audit-relevant part of a LangChain message (role, content, requested tool calls)."""
    if not hasattr(message, "content"):
        return message
    out = {"role": getattr(message, "type", None), "content": message.content}
    if getattr(message, "tool_calls", None):
        out["tool_calls"] = message.tool_calls
    if getattr(message, "tool_call_id", None):
        out["tool_call_id"] = message.tool_call_id
    return out


def _summed_usage(messages: list[Any]) -> dict[str, int] | None:
    """Token usage over a batch of chat generations (each message carries its own)."""
    usages = [u for u in (token_usage(getattr(m, "usage_metadata", None)) for m in messages) if u]
    if not usages:
        return None
    return {k: sum(u.get(k, 0) for u in usages) for k in ("input_tokens", "output_tokens", "total_tokens")}


def _name(serialized: dict[str, Any] | None, kwargs: dict[str, Any], default: str) -> str:
    serialized = serialized or {}
    ids = serialized.get("id") or [default]
    return kwargs.get("name") or serialized.get("name") or ids[-1]


class LedgerCallbackHandler(LedgerAdapter, BaseCallbackHandler):
    """Records LangChain chain, LLM, tool and agent callbacks as linked ledger events."""

    framework = "langchain"
    run_inline = True    # recording only enqueues; inline keeps callback order in async code
    raise_error = False

    def __init__(self, ledger: "Ledger", **options: Any) -> None:
        LedgerAdapter.__init__(self, ledger, **options)

    # --- chains ---
    @shielded
    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, tags: list[str] | None = None, **kwargs: Any) -> None:
        name = _name(serialized, kwargs, "chain")
        payload: dict[str, Any] = {"name": name, "tags": tags or None}
        put(payload, "input", inputs)
        self.start_run(run_id, action_type("chain", name), payload, parent_id=parent_run_id)

    @shielded
    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        payload: dict[str, Any] = {}
        put(payload, "output", [_message(m) for m in outputs] if isinstance(outputs, list) else _message(outputs))
        self.end_run(run_id, payload)

    @shielded
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.end_run(run_id, error=error)

    # --- models ---
    @shielded
    def on_llm_start(self, serialized: dict[str, Any] | None, prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                     **kwargs: Any) -> None:
        self._llm_start(serialized, "prompts", prompts, run_id, parent_run_id, metadata, kwargs)

    @shielded
    def on_chat_model_start(self, serialized: dict[str, Any] | None, messages: list[list[Any]], *,
                            run_id: UUID, parent_run_id: UUID | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        batch = [[_message(m) for m in conversation] for conversation in messages]
        self._llm_start(serialized, "messages", batch, run_id, parent_run_id, metadata, kwargs)

    def _llm_start(self, serialized: dict[str, Any] | None, key: str, value: Any, run_id: UUID,
                   parent_run_id: UUID | None, metadata: dict[str, Any] | None, kwargs: dict[str, Any]) -> None:
        metadata = metadata or {}
        params = kwargs.get("invocation_params") or {}
        payload: dict[str, Any] = {
            "name": _name(serialized, kwargs, "llm"),
            "provider": metadata.get("ls_provider"),
            "model": metadata.get("ls_model_name") or params.get("model") or params.get("model_name"),
        }
        put(payload, key, value)
        self.start_run(run_id, action_type("llm", payload["provider"] or "call"), payload, parent_id=parent_run_id)

    @shielded
    def on_llm_end(self, response: "LLMResult", *, run_id: UUID, **kwargs: Any) -> None:
        generations = [g for batch in response.generations for g in batch]
        messages = [getattr(g, "message", None) for g in generations]
        payload: dict[str, Any] = {}
        put(payload, "output", [_message(m) if m is not None else g.text for g, m in zip(generations, messages)])
        payload["token_usage"] = token_usage((response.llm_output or {}).get("token_usage")) or _summed_usage(messages)
        self.end_run(run_id, payload)

    @shielded
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.end_run(run_id, error=error)

    # --- tools ---
    @shielded
    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, inputs: dict[str, Any] | None = None,
                      **kwargs: Any) -> None:
        name = _name(serialized, kwargs, "tool")
        payload: dict[str, Any] = {"name": name}
        put(payload, "input", inputs if inputs is not None else input_str)
        self.start_run(run_id, action_type("tool", name), payload, parent_id=parent_run_id)

    @shielded
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        payload: dict[str, Any] = {}
        put(payload, "output", _message(output))
        self.end_run(run_id, payload)

    @shielded
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.end_run(run_id, error=error)

    # --- agents (decisions inside an agent executor's run) ---
    @shielded
    def on_agent_action(self, action: "AgentAction", *, run_id: UUID, **kwargs: Any) -> None:
        payload: dict[str, Any] = {"tool": action.tool}
        put(payload, "tool_input", action.tool_input)
        put(payload, "log", action.log)
        self.record_event("agent:step", payload, parent_id=run_id)

    @shielded
    def on_agent_finish(self, finish: "AgentFinish", *, run_id: UUID, **kwargs: Any) -> None:
        payload: dict[str, Any] = {}
        put(payload, "output", finish.return_values)
        put(payload, "log", finish.log)
        self.record_event("agent:finish", payload, parent_id=run_id)
