"""Context-overflow policies: which earlier messages of a chat are left out of its prompt when the
whole chat no longer fits the context with room for the reply (``context_overflow``).

- ``stop``: nothing is left out; a prompt longer than the context fails with a clear error.
- ``truncate_middle``: keep the system prompt and the first turn (the task, a pasted document),
  leave out the oldest turns after it.
- ``rolling_window``: keep the system prompt, leave out the oldest turns.

Only whole turns go: a user message with everything after it up to the next user message (the
reply, and with tools the calls and their results), so no template sees a reply without its
question or a tool result without its call. The last turn (the user's new message) always stays;
if it does not fit even alone, the caller gives the clear error. The caller's messages, and the
conversation they came from, are never changed: the prompt is built from a selection of them.

The room left for the reply is ``max_tokens`` (512 tokens when it is -1, unlimited), at most half
the context, so a long ``max_tokens`` never leaves the chat less than half of it. Below that room,
as many turns as needed are left out (the fewest that make room), and no more.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from ..types import Message

POLICIES = ("stop", "truncate_middle", "rolling_window")
# room for the reply when max_tokens is unlimited (-1): a few paragraphs
UNLIMITED_REPLY_ROOM = 512
# tools.plan.plain_messages writes a tool result as a user message in these tags (for templates
# without tools); it belongs to the call before it, so it does not start a turn
_TOOL_RESULT = "<tool_response>"


def reply_room(n_ctx_seq: int, max_tokens: Optional[int]) -> int:
    """Tokens kept free for the reply: ``max_tokens`` (or 512 when unlimited), at most half the context."""
    want = max_tokens if max_tokens is not None and max_tokens > 0 else UNLIMITED_REPLY_ROOM
    return max(1, min(want, n_ctx_seq // 2))


def turns(messages: Sequence[Message]) -> tuple[int, list[range]]:
    """(how many leading system messages, the index ranges of the turns after them).

    A turn starts at each user message that is not a tool result; whatever comes before the first
    user message (an assistant's greeting) is a turn of its own.
    """
    head = 0
    while head < len(messages) and messages[head].get("role") in ("system", "developer"):
        head += 1
    starts = [i for i in range(head, len(messages)) if i == head or _opens_turn(messages[i])]
    ends = starts[1:] + [len(messages)]
    return head, [range(a, b) for a, b in zip(starts, ends)]


def _opens_turn(m: Message) -> bool:
    content = m.get("content")
    return m.get("role") == "user" and not (isinstance(content, str) and content.lstrip().startswith(_TOOL_RESULT))


def fit(messages: Sequence[Message], tokens_of: Callable[[list[Message]], list[int]], full: list[int],
        policy: str, n_ctx_seq: int, room: int) -> tuple[list[int], int]:  # fmt: skip
    """The prompt's tokens under ``policy`` and how many messages it left out.

    ``full`` is the whole chat's tokens, ``tokens_of`` renders a selection of ``messages``. The
    result may still be too long (the last turn alone does not fit): the caller says so.
    """
    if policy not in POLICIES:
        raise ValueError(f"context_overflow={policy!r}: must be one of {', '.join(POLICIES)}")
    if policy == "stop" or len(full) + room <= n_ctx_seq:
        return full, 0
    head, spans = turns(messages)
    if len(spans) < 2:
        return full, 0  # only the last turn: nothing may go
    # the turns that may go, oldest first: for truncate_middle those after the first user turn,
    # then (when that is not enough) the first turn too, so a long chat still keeps going
    first = next((i for i, s in enumerate(spans) if messages[s.start].get("role") == "user"), 0)
    kept_front = min(first + 1 if policy == "truncate_middle" else 0, len(spans) - 1)
    order = list(range(kept_front, len(spans) - 1)) + list(range(kept_front))

    def without(k: int) -> tuple[list[int], int]:
        gone = set(order[:k])
        picked = list(messages[:head]) + [messages[i] for j, s in enumerate(spans) if j not in gone for i in s]
        return tokens_of(picked), sum(len(spans[j]) for j in gone)

    # the fewest turns left out that make room (fewer tokens for every turn more): a binary search,
    # a handful of renders however long the chat
    lo, hi = 1, len(order)
    best = without(hi)
    if len(best[0]) + room > n_ctx_seq:
        return best  # even all of them: the last turn gets what is left, or the caller's error
    while lo < hi:
        mid = (lo + hi) // 2
        candidate = without(mid)
        if len(candidate[0]) + room <= n_ctx_seq:
            best, hi = candidate, mid
        else:
            lo = mid + 1
    return best
