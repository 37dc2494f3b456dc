"""smolagents adapter: a step callback that records agent runs, steps, model calls and tools.

smolagents' own hook is ``step_callbacks``: the agent calls them with each memory step
(planning, action, final answer) once the step is done. Register the callback for every step
type, ``ToolCallingAgent(..., step_callbacks={MemoryStep: LedgerStepCallback(ledger)})`` or
``LedgerStepCallback(ledger).attach(agent)``; a plain list registers it for action steps only,
and then runs are never ended.

smolagents reports a step only after it ran, so each step is recorded when it ends: an
``agent:run`` start before the run's first step, then per action step ``agent:step`` (start
at the step's own start time), its model call ``llm:call`` (input messages, output message,
``token_usage``) and each tool it called ``tool:<name>`` (arguments; the observation when the
step called one tool, else the step's ``observations``), and the run's end at the final answer.
smolagents times only its steps, so a step's model and tool calls carry the step's end time
(``duration_ms`` 0).
A step's error (a failing tool, an unparsable reply) ends the step, its model call or its tool
as an error; smolagents shows it to the model and goes on. A model failure ends the run: it
is recorded as the error leaving ``agent.run()`` while the step is finalised.
"""
from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING, Any

from smolagents.memory import ActionStep, FinalAnswerStep, MemoryStep, PlanningStep
from smolagents.utils import AgentError

from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, put, shielded, token_usage

if TYPE_CHECKING:
    from smolagents.agents import MultiStepAgent

    from ledgerstream.producers.ledger import Ledger


class LedgerStepCallback(LedgerAdapter):
    """Records smolagents runs, steps, model calls and tool calls as linked ledger events."""

    framework = "smolagents"

    def __init__(self, ledger: "Ledger", **options: Any) -> None:
        super().__init__(ledger, **options)
        self._open: dict[int, tuple[str, bool]] = {}   # id(agent) -> (run in progress, had an action step)

    def attach(self, agent: "MultiStepAgent") -> "LedgerStepCallback":
        """Register on ``agent`` for every step type (planning, action, final answer)."""
        agent.step_callbacks.register(MemoryStep, self)
        return self

    @shielded
    def __call__(self, step: MemoryStep, agent: "MultiStepAgent | None" = None) -> None:
        escaping = sys.exc_info()[1]   # an error leaving agent.run() while smolagents finalises the step
        run_id = self._run(agent, step)
        if isinstance(step, FinalAnswerStep):
            self._close(agent)
            payload: dict[str, Any] = {}
            put(payload, "output", step.output)
            self.end_run(run_id, payload)
        elif isinstance(step, ActionStep):
            fatal = escaping if isinstance(escaping, AgentError) and escaping is not step.error else None
            self._action(run_id, step, fatal, _model_id(agent))
            if fatal is not None:
                self._close(agent)
                self.end_run(run_id, error=fatal)
        elif isinstance(step, PlanningStep):
            self._planning(run_id, step, _model_id(agent))

    def _run(self, agent: "MultiStepAgent | None", step: MemoryStep) -> str:
        """The id of ``agent``'s run in progress; its start is recorded before its first step.

        smolagents numbers a run's action steps from 1, so a first step after an action step
        begins a new run (the last one left ``run()`` without an answer we saw).
        """
        key, acting = id(agent), isinstance(step, ActionStep)
        run_id, had_action = self._open.get(key, (None, False))
        if run_id is not None and not (acting and had_action and step.step_number == 1):
            self._open[key] = (run_id, had_action or acting)
            return run_id
        if run_id is not None:
            self.end_run(run_id, error={"type": "Incomplete", "message": "the run ended without a final answer"})
        run_id = uuid.uuid4().hex
        self._open[key] = (run_id, acting)
        payload: dict[str, Any] = {"name": getattr(agent, "name", None), "agent_class": type(agent).__name__,
                                   "model": _model_id(agent), "tools": sorted(getattr(agent, "tools", None) or {})}
        put(payload, "task", getattr(agent, "task", None))
        timing = getattr(step, "timing", None)
        self.start_run(run_id, "agent:run", payload, at=timing.start_time if timing else None)
        return run_id

    def _close(self, agent: "MultiStepAgent | None") -> None:
        self._open.pop(id(agent), None)

    def _action(self, run_id: str, step: ActionStep, fatal: AgentError | None, model: str | None) -> None:
        step_id = f"{run_id}:{step.step_number}"
        error = step.error or fatal
        self.start_run(step_id, "agent:step", {"step_number": step.step_number}, parent_id=run_id,
                       at=step.timing.start_time)
        message = step.model_output_message
        done = step.timing.end_time
        self._model_call(step_id, model, step.model_input_messages, message, step.token_usage, done,
                         error=fatal if message is None else None)
        calls = (message.tool_calls or []) if message is not None else []
        for call in calls:
            call_id = f"{step_id}:{call.id}"
            start: dict[str, Any] = {"tool_call_id": call.id}
            put(start, "input", call.function.arguments)
            self.start_run(call_id, action_type("tool", call.function.name), start, parent_id=step_id, at=done)
            end: dict[str, Any] = {}
            if len(calls) == 1:
                put(end, "output", step.observations)
            self.end_run(call_id, end, error=step.error if len(calls) == 1 else None, at=done)
        end = {"is_final_answer": step.is_final_answer}
        put(end, "observations", step.observations)
        put(end, "output", step.action_output)
        put(end, "code_action", step.code_action)
        self.end_run(step_id, end, error=error, at=done)

    def _planning(self, run_id: str, step: PlanningStep, model: str | None) -> None:
        step_id = f"{run_id}:plan:{uuid.uuid4().hex}"
        self.start_run(step_id, "agent:step", {"step_type": "planning"}, parent_id=run_id, at=step.timing.start_time)
        self._model_call(step_id, model, step.model_input_messages, step.model_output_message, step.token_usage,
                         step.timing.end_time)
        end: dict[str, Any] = {}
        put(end, "plan", step.plan)
        self.end_run(step_id, end, at=step.timing.end_time)

    def _model_call(self, step_id: str, model: str | None, messages: Any, reply: Any, usage: Any,
                    at: float | None, *, error: Any = None) -> None:
        """The step's model call, timed like its tool calls: smolagents times only the step."""
        if messages is None and reply is None:
            return
        call_id = f"{step_id}:llm"
        start: dict[str, Any] = {"model": model}
        put(start, "messages", messages)
        self.start_run(call_id, "llm:call", start, parent_id=step_id, at=at)
        end: dict[str, Any] = {"token_usage": token_usage(usage)}
        put(end, "output", reply)
        self.end_run(call_id, end, error=error, at=at)


def _model_id(agent: Any) -> str | None:
    return getattr(getattr(agent, "model", None), "model_id", None)
