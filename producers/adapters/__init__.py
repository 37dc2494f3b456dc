"""Framework adapters: record what LangChain, CrewAI, LiteLLM, Haystack, the OpenAI Agents
SDK, LlamaIndex, Pydantic AI, smolagents, AutoGen and Google ADK do as linked ledger events
(see docs/adapters.md).

Each adapter lives in its own module and imports its framework; this package imports none,
so ``import ledgerstream.producers.adapters`` stays cheap. The names below load on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

# public name -> module (under this package) that defines it
_LAZY = {
    "LedgerAdapter": "base",
    "LedgerCallbackHandler": "langchain",
    "LedgerEventListener": "crewai",
    "LedgerLogger": "litellm",
    "LedgerTracer": "haystack",
    "LedgerTracingProcessor": "openai_agents",
    "LedgerInstrumentation": "llamaindex",
    "LedgerSpanProcessor": "pydantic_ai",
    "LedgerStepCallback": "smolagents",
    "LedgerStreamRecorder": "autogen",
    "LedgerPlugin": "google_adk",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
