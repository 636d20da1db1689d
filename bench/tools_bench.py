"""What tools cost: generation speed of the same chat without tools, with tools offered (the
fallback's text-or-call grammar, the model answering in text) and with a forced call (the call's
JSON grammar), on the bundled model, measured in one run; and the forced call once more with the
grammar's resamples over the whole vocabulary, to show what resampling among the likeliest tokens
saves (``lmnb.engine.sampler.NARROW``).

    python bench/tools_bench.py [--rounds 5] [--tokens 64]

Each round runs the three kinds back to back; the headline is the median of the per-round ratios
to "no tools" (tokens/s of generation, from the engine's own timings). Informational: the exit
code is 0 either way.
"""

from __future__ import annotations

import argparse
import statistics

TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
                   "required": ["city", "unit"]}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()

    import lmnb
    from lmnb.engine import GenerationSpec
    from lmnb.tools import Tool
    from lmnb.tools.plan import plan
    from lmnb.types import SamplingParams

    lmnb.load("smollm2", n_ctx=4096)
    engine = lmnb.get_engine()
    ask = [{"role": "user", "content": "Tell me about the weather in Paris and what to wear."}]
    tools = [Tool.from_openai(TOOL)]
    auto = plan(ask, tools, None)
    forced = plan(ask, tools, None, tool_choice="required", parallel=False)
    params = SamplingParams(temperature=0.0, max_tokens=args.tokens, seed=1)

    def run(messages, tool_plan) -> tuple[float, int]:
        fields = tool_plan.spec_fields() if tool_plan else {}
        spec = GenerationSpec(messages=messages, params=params, **fields)
        r = engine.submit(spec, stages=[tool_plan.stage()] if tool_plan else []).result()
        return r.timings.generation_tokens_per_s, r.usage.completion_tokens

    from lmnb.engine import sampler

    def whole_vocabulary(messages, tool_plan) -> tuple[float, int]:
        """The forced call with the grammar's resamples over the whole vocabulary (as before NARROW)."""
        narrow, sampler.NARROW = sampler.NARROW, ()
        try:
            return run(messages, tool_plan)
        finally:
            sampler.NARROW = narrow

    run(ask, None)  # warm up
    rows: dict[str, list[float]] = {"no tools": [], "tools offered (auto)": [], "forced call": [],
                                    "forced, whole-vocab resample": []}
    ratios: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.rounds):
        base, _n = run(ask, None)
        offered, _ = run(auto.messages, auto)
        call, _ = run(forced.messages, forced)
        whole, _ = whole_vocabulary(forced.messages, forced)
        for key, v in zip(rows, (base, offered, call, whole)):
            rows[key].append(v)
            ratios[key].append(v / base)
    print(f"{'':30} {'tokens/s (median)':>18} {'ratio to no tools':>18}")
    for key in rows:
        print(f"{key:30} {statistics.median(rows[key]):18.1f} {statistics.median(ratios[key]):18.2f}")
    print("(tools offered: the fallback prompt is longer, and every token is checked against the grammar)")


if __name__ == "__main__":
    main()
