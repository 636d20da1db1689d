"""Reply text as the engine hands it over: whole characters only."""

from __future__ import annotations

import lmnb


def _incomplete_utf8_token(engine) -> int:
    """A token whose bytes begin a multi-byte character without ending it (e.g. half an emoji)."""
    for text in ("🙂", "😀", "中", "é"):
        pieces = [b for _, b, _ in engine.tokenize(text, special=False)]
        for tok, piece in zip((t for t, _, _ in engine.tokenize(text, special=False)), pieces):
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError:
                return tok
    raise AssertionError("no token holding part of a character found")


def test_a_reply_cut_inside_a_character_does_not_end_in_a_replacement_character(loaded):
    tok = _incomplete_utf8_token(loaded)
    # +100 forces that token; max_tokens=1 ends the reply right after it, inside the character
    out = lmnb.complete("Smile:", logit_bias={tok: 100}, max_tokens=1, temperature=0)
    assert out.finish_reason == "length" and out.usage.completion_tokens == 1
    assert "\ufffd" not in out.text and out.text == ""
    streamed = "".join(lmnb.complete("Smile:", logit_bias={tok: 100}, max_tokens=1, temperature=0, stream=True))
    assert streamed == out.text
