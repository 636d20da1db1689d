"""What is done with a reply once it is made, attached to each request when it is submitted and run
off the decode thread (see ``lmnb.engine.request``): the schema stage parses structured output
once, a conversation appends the turn, the history records the row."""

from __future__ import annotations

from typing import Any, Callable, Optional

from .config import get_config
from .conversations import Conversation
from .engine.request import Stage
from .types import Completion, Message


def append_to(conv: Conversation, user: Message) -> Callable[[Completion], None]:
    def append(result: Completion) -> None:
        if result.error is None:
            reply = {"role": "assistant", "content": result.text, "stats": reply_stats(result)}
            if result.reasoning:
                reply["reasoning"] = result.reasoning  # shown folded by the chat pane; not sent to the template
            if result.sources:
                reply["sources"] = result.sources  # chat(docs=...): what its [n] cite (the chat pane shows them)
            conv.append_turn(user, reply)

    return append


class SchemaStage(Stage):
    """Parses the final reply into the schema's object once, for every caller (``.parsed``).

    A reply that does not parse keeps ``parsed = None`` and carries the ``StructuredOutputError``
    in ``.parse_error``: a streaming caller has already shown the text, and decides what to raise.
    """

    def __init__(self, schema: Any) -> None:
        self.schema = schema

    def on_result(self, result: Completion) -> Completion:
        from .errors import StructuredOutputError
        from .structured import parse

        max_tokens = result.params.max_tokens if result.params else None
        try:
            result.parsed = parse(result.text, self.schema, result.finish_reason, max_tokens=max_tokens)
        except StructuredOutputError as e:
            e.completion = result
            result.parse_error = e
        except ValueError as e:  # a validator of the user's schema class said no
            result.parse_error = StructuredOutputError(str(e), result.text, result.finish_reason, result)
        return result


def schema_stage(schema: Any, grammar: Optional[str]) -> tuple[list, Optional[str]]:
    """The output stages and grammar for ``schema`` (none when there is no schema)."""
    if schema is None:
        return [], grammar
    if grammar is not None:
        raise ValueError("pass either grammar= or schema=, not both (a schema is turned into a grammar)")
    from .structured import grammar as schema_to_grammar

    return [SchemaStage(schema)], schema_to_grammar(schema)


def history_recorder(spec: Any, kind: str, conversation: Optional[str],
                      model_path: Optional[str]) -> Callable[[Completion], None]:  # fmt: skip
    """An ``on_done`` callback that queues the history row; the model is the one chosen at submit."""

    def record(result: Completion) -> None:
        if not get_config().history:
            return
        from .history_db import WRITER, make_row

        WRITER.record(
            history_path(),
            make_row(
                request_id=result.request_id,
                kind=kind,
                conversation=conversation,
                model=result.model,
                model_path=model_path,
                model_sha256=None,  # the writer thread adds it (hashing a large file takes a while)
                params={**(result.params.to_dict() if result.params else {}),
                        **({"lora": result.lora} if result.lora else {})},  # the adapters and their scales
                messages=spec.messages if spec.messages is not None else spec.prompt,
                completion=result,
            ),
        )

    return record


def reply_stats(result: Completion) -> dict[str, Any]:
    """The figures shown under a reply: tokens, tokens/s, time to first token, why it ended."""
    return {
        "tokens": result.usage.completion_tokens,
        "tokens_per_s": round(result.timings.generation_tokens_per_s, 2),
        "ttft_s": round(result.timings.ttft_s, 4),
        "prompt_tokens": result.usage.prompt_tokens,
        "cached_tokens": result.usage.cached_tokens,
        "finish_reason": result.finish_reason,
        "model": result.model,
        "seed": result.params.seed if result.params else None,
        "dropped_messages": result.dropped_messages,  # left out of the prompt by context_overflow
        "lora": result.lora,  # {adapter: scale} the reply was generated with
    }




def history_path() -> str:
    return get_config().resolved_history_path()
