"""Reasoning models: the thinking kept apart from the answer.

The splitter is tested on replies in each family's format, streamed in awkward pieces; then, live,
the bundled SmolLM2 is made to think by a chat-template override that opens ``<think>`` at the
end of the prompt (as DeepSeek-R1's and Qwen3's templates do)."""

from __future__ import annotations

import json

import httpx
import pydantic
import pytest
from IPython.utils.capture import capture_output

import lmnb
from lmnb.reasoning import ReasoningStage, detect, split
from lmnb.types import Completion, Timings, Usage

from .conftest import server_root

THINK_TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}")

# (template marker, reply, starts inside the thinking, thinking, answer)
REPLIES = [
    # Qwen3 / SmolLM3 / QwQ: the reply opens the thinking itself
    ("<think>", "<think>\nThe user asks 2+3. That is 5.\n</think>\n\nThe answer is 5.", False,
     "The user asks 2+3. That is 5.", "The answer is 5."),
    # DeepSeek-R1 distills: the template wrote <think>, the reply starts inside it
    ("<think>", "Okay, 2+3 is 5.\n</think>\n\n**5**", True, "Okay, 2+3 is 5.", "**5**"),
    # Magistral
    ("[THINK]", "[THINK]Simple sum.[/THINK]5", False, "Simple sum.", "5"),
    # gpt-oss (harmony): analysis, then the final channel
    ("<|channel|>analysis", "<|channel|>analysis<|message|>Add them.<|end|><|start|>assistant<|channel|>final"
                            "<|message|>2 + 3 = 5<|return|>", False, "Add them.", "2 + 3 = 5"),
    # gpt-oss answering at once, in its final channel only
    ("<|channel|>analysis", "<|channel|>final<|message|>Five.<|return|>", False, "", "Five."),
    # no thinking at all
    ("<think>", "5, simply.", False, "", "5, simply."),
    # cut off while thinking (max_tokens): no answer yet
    ("<think>", "<think>\nLet me see, 2 and 3 make", False, "Let me see, 2 and 3 make", ""),
]


def _template(marker: str) -> str:
    if marker == "<|channel|>analysis":
        return "{{ '<|start|>assistant<|channel|>analysis<|message|>' }}{{ '<|channel|>final' }}"
    if marker == "[THINK]":
        return "{{ '[THINK]' }}{{ '[/THINK]' }}"
    return "{{ '<think>' }}"


@pytest.mark.parametrize("marker,reply,inside,thinking,answer", REPLIES)
@pytest.mark.parametrize("piece", [1, 3, 1000])
def test_the_thinking_is_split_from_the_answer_while_streaming(marker, reply, inside, thinking, answer, piece):
    fmt = detect(_template(marker))
    assert fmt is not None
    assert split(reply, fmt, inside) == (thinking, answer)
    stage = ReasoningStage(fmt, inside)
    events = []
    for i in range(0, len(reply), piece):
        events += stage.on_event(("delta", reply[i:i + piece]))
    result = Completion(reply, "stop", Usage(), Timings())
    events += stage.on_end(result)
    result = stage.on_result(result)
    streamed_answer = "".join(p for k, p in events if k == "delta")
    streamed_thinking = "".join(p for k, p in events if k == "reasoning")
    assert result.text == answer and (result.reasoning or "") == thinking
    assert streamed_answer == answer
    assert streamed_thinking.strip() == thinking


def test_models_without_thinking_are_left_alone():
    assert detect(None) is None
    assert detect("{% for m in messages %}{{ m.content }}{% endfor %}") is None
    assert detect("{% if enable_thinking %}<think>{% endif %}").switch == "enable_thinking"


# ---- live, on the bundled model made to think ---------------------------------------------------
@pytest.fixture(scope="module")
def thinker(smollm2_path):
    # batch_invariant: replies compared across requests (streamed and whole) are computed the same way
    lmnb.load(smollm2_path, n_ctx=2048, chat_template=THINK_TEMPLATE, name="thinker", batch_invariant=True)
    yield "thinker"
    lmnb.unload("thinker")


class Sum(pydantic.BaseModel):
    result: int


def test_the_answer_and_the_thinking_are_apart(thinker):
    r = lmnb.chat("What is 2+3?", model=thinker, max_tokens=60, temperature=0, reasoning_budget=12)
    assert r.reasoning and "<think>" not in r.text and "</think>" not in r.text
    assert "</think>" not in r.reasoning
    r0 = lmnb.chat("What is 2+3?", model=thinker, max_tokens=20, temperature=0, reasoning_budget=0)
    assert r0.reasoning is None and r0.text  # budget 0: no thinking


def test_a_schema_constrains_only_the_answer_after_thinking(thinker):
    r = lmnb.chat("What is 2+3? Answer in JSON.", model=thinker, schema=Sum, max_tokens=150, temperature=0,
                  reasoning_budget=16)  # fmt: skip
    assert isinstance(r.parsed, Sum) and r.reasoning
    res = lmnb.map("What is {item}+1? Answer in JSON.", [1, 2, 3], model=thinker, schema=Sum, max_tokens=120,
                   temperature=0, reasoning_budget=24, progress=False)  # fmt: skip
    assert all(isinstance(c.parsed, Sum) for c in res.completions)
    assert all("<think>" not in c.text and c.reasoning for c in res.completions)


def test_the_server_returns_reasoning_content_streamed_and_whole(thinker, loaded):
    srv = lmnb.serve(port=0)
    try:
        body = {"model": thinker, "messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 50,
                "temperature": 0.7, "seed": 5, "reasoning_budget": 10}
        whole = httpx.post(srv.url + "/chat/completions", json=body, timeout=120).json()["choices"][0]["message"]
        assert whole["reasoning_content"] and "</think>" not in whole["content"]
        thinking, answer = "", ""
        with httpx.stream("POST", srv.url + "/chat/completions", json={**body, "stream": True}, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    choices = json.loads(line[6:])["choices"]
                    delta = choices[0]["delta"] if choices else {}
                    thinking += delta.get("reasoning_content") or ""
                    answer += delta.get("content") or ""
        assert answer == whole["content"] and thinking.strip() == whole["reasoning_content"]
        assert httpx.get(server_root(srv) + "/health").status_code == 200
    finally:
        srv.stop()


def test_the_cell_shows_the_thinking_folded_and_keeps_the_answer(thinker, shell):
    with capture_output() as cap:
        shell.run_cell_magic("lm", f"--model {thinker} -t 0 -n 40 --reasoning-budget 10 -o reply", "What is 2+3?")
    html = "".join(o.data.get("text/html", "") for o in cap.outputs)
    assert 'class="lmnb-thinking"' in html and "<summary>Thinking</summary>" in html
    assert "<think>" not in shell.user_ns["reply"] and "&lt;think&gt;" not in html
