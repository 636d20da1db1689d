"""What the generating routes share: submitting a request's generations, and planning its tools."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from ..engine import Engine, GenerationSpec, Request as EngineRequest
from ..types import Completion, ModelInfo
from .errors import APIError, as_api_error, no_model


def plan_tools(tools: list, tool_choice: Any, parallel: Optional[bool], messages: list[dict], info: ModelInfo,
               param: str = "tool_choice") -> Any:  # fmt: skip
    """The ``lmnb.tools`` plan of a request (None without tools, or with ``tool_choice: none``);
    a bad choice is a 400 naming ``param``."""
    if not tools:
        return None
    from ..tools.plan import plan

    try:
        return plan(messages, tools, info.chat_template, tool_choice=tool_choice, parallel=parallel is not False)
    except ValueError as e:
        raise APIError(400, str(e), param=param) from None


def with_tools(tools: list, tool_choice: Any, parallel: Optional[bool], messages: list[dict], info: ModelInfo,
               grammar: Optional[str]) -> tuple[list[dict], Optional[str], dict, Any]:  # fmt: skip
    """(messages, grammar, GenerationSpec fields, tool plan) of a chat request with these tools;
    without tools, earlier tool turns in ``messages`` are written the way the template can take."""
    tool_plan = plan_tools(tools, tool_choice, parallel, messages, info)
    if tool_plan is not None:
        fields = {k: v for k, v in tool_plan.spec_fields().items() if k != "grammar"}
        return tool_plan.messages, tool_plan.grammar or grammar, fields, tool_plan
    if any(m["role"] == "tool" or m.get("tool_calls") for m in messages):
        from ..tools.plan import history_messages

        messages = history_messages(messages, info.chat_template)
    return messages, grammar, {}, None


def chat_specs(messages: list[dict], tools: list, tool_choice: Any, parallel: Optional[bool], info: ModelInfo,
               params: Sequence[Any], *, grammar: Optional[str] = None,
               **spec_fields: Any) -> tuple[list[GenerationSpec], Optional[Callable[[], list]]]:  # fmt: skip
    """The ``GenerationSpec`` of a chat request for each of ``params`` (one per choice), with its
    tools planned, and the factory of the output stages each request gets (None without tools)."""
    messages, grammar, fields, tool_plan = with_tools(tools, tool_choice, parallel, messages, info, grammar)
    specs = [GenerationSpec(messages=messages, params=p, grammar=grammar, **fields, **spec_fields) for p in params]
    return specs, (lambda: [tool_plan.stage()]) if tool_plan is not None else None


def submit_all(engine: Engine, key: Optional[str], specs: list[GenerationSpec], *,
                conversation: Optional[str] = None, on_done: Sequence[Callable[[Completion], None]] = (),
                stages: Optional[Callable[[], list]] = None) -> list[EngineRequest]:  # fmt: skip
    """Submit every spec, or none: a failure cancels those already queued.

    With the session's registry (``key`` set) through ``lmnb.api.submit``, so every request gets
    its history row naming the model that answered, like the notebook's own."""
    if not engine.loaded:
        raise no_model()
    reqs: list[EngineRequest] = []
    try:
        for spec in specs:
            own = stages() if stages else []
            if key is None:  # one engine, not the session's models: what api.submit adds, here
                from ..reasoning import for_request

                spec, thinking = for_request(spec, engine.info.chat_template if engine.info else None)
                reqs.append(engine.submit(spec, stages=[*thinking, *own]))
            else:
                from ..api import submit

                reqs.append(submit(spec, kind="server", model=key, conversation=conversation, stages=own,
                                   on_done=on_done))  # fmt: skip
    except BaseException as e:
        for r in reqs:
            r.cancel()
        raise as_api_error(e) from None
    return reqs


def lora_choice(engine: Engine, entries: Optional[list]) -> Optional[list[dict]]:
    """A request's ``lora`` field as the engine takes it; an unknown id is a 400 naming the field."""
    if entries is None:
        return None
    choice = [{"id": e.id, "scale": e.scale} for e in entries]
    try:
        engine.lora_key(choice)
    except ValueError as e:
        raise APIError(400, str(e), param="lora") from None
    return choice

