"""``lmnb.map(..., checkpoint=PATH)``: each finished row written as it ends, so a job resumes.

One JSON line per finished row, appended and flushed at once: ``row`` (its position in the
input), ``key`` (a hash of what was asked: the row's messages or prompt, and its grammar), the
reply's text and why it ended, and the token counts. Running the same ``map`` again with the same
file takes every row whose position and key match from the file and sends only the others; a
row whose input changed has another key and is done again. A line cut short by a crash is
skipped (that row is done again).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional, Sequence

from .types import Completion, SamplingParams, Timings, Usage


def row_key(spec: Any) -> str:
    """A hash of what a row asks for (messages or prompt, and grammar): not its sampling."""
    asked = {"messages": spec.messages, "prompt": spec.prompt, "grammar": spec.grammar}
    return hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()[:20]


class Checkpoint:
    """The finished rows of one ``map`` job, in the JSON-lines file ``path``."""

    def __init__(self, path: "str | os.PathLike[str]", specs: Sequence[Any]) -> None:
        self.path = os.fspath(path)
        self.keys = [row_key(s) for s in specs]
        self._checked = False  # whether the file's end was looked at (before the first write)

    def finished(self) -> dict[int, dict]:
        """Rows already done: position -> their record (the last one written wins)."""
        done: dict[int, dict] = {}
        try:
            f = open(self.path, encoding="utf-8")
        except FileNotFoundError:
            return done
        with f:
            for line in f:
                try:
                    rec = json.loads(line)
                    i = rec["row"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash, or not ours
                if isinstance(i, int) and 0 <= i < len(self.keys) and rec.get("key") == self.keys[i]:
                    done[i] = rec
        return done

    def write(self, i: int, comp: Completion) -> None:
        """Append row ``i``'s finished reply. Each line is written and the file closed at once
        (no handle left open between rows): a kernel restart or a crash loses no finished row."""
        rec = {"row": i, "key": self.keys[i], "text": comp.text, "finish_reason": comp.finish_reason,
               "prompt_tokens": comp.usage.prompt_tokens, "completion_tokens": comp.usage.completion_tokens,
               "model": comp.model}  # fmt: skip
        if comp.reasoning:
            rec["reasoning"] = comp.reasoning
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        if not self._checked:
            line = self._separator() + line
            self._checked = True
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def _separator(self) -> str:
        """A newline when the file ends in a line cut short by a crash, which must not swallow
        the next one (and the folder made, on the first write)."""
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        try:
            with open(self.path, "rb") as b:
                if b.seek(0, os.SEEK_END) > 0:
                    b.seek(-1, os.SEEK_END)
                    return "" if b.read(1) == b"\n" else "\n"
        except FileNotFoundError:
            pass
        return ""


def completion(rec: dict, params: Optional[SamplingParams], stages: Sequence[Any]) -> Completion:
    """A finished row's ``Completion`` rebuilt from its record, through the map's output stages
    (a schema parses it again), with no timings (it was not generated now)."""
    comp = Completion(
        text=rec.get("text", ""),
        finish_reason=rec.get("finish_reason", "stop"),
        usage=Usage(prompt_tokens=rec.get("prompt_tokens", 0), completion_tokens=rec.get("completion_tokens", 0)),
        timings=Timings(),
        model=rec.get("model", ""),
        params=params,
        request_id="checkpoint",
        reasoning=rec.get("reasoning"),
    )
    for stage in stages:
        comp = stage.on_result(comp)
    return comp
