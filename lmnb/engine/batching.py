"""Continuous batching on the engine's worker thread: admit, step, finish.

``Engine`` (``engine.py``) owns the queue and the thread; this is what its worker does with the
requests it admitted. A request becomes a ``Seq`` in a free slot (a llama.cpp sequence id),
reusing the longest cached prefix of its prompt from any slot. Each ``_step`` packs one new
token per generating sequence, then prompt chunks within ``n_batch``, into one ``llama_decode``,
and samples for every sequence that produced logits. Only the worker calls these methods.

With the shared (unified) KV cache, the slots outnumber ``n_parallel``: an idle slot keeps what
its last request left (a conversation's turns, a shared system prompt) for the next request
that starts the same way, until its cells are wanted. When the cache is full, the idle slot
used longest ago gives its cells back first; if none is left, the newest running sequence is
paused (its cells dropped, its tokens kept) and resumes, re-reading them, when there is room.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from ..errors import GenerationError
from ..types import Completion, ModelInfo, Timings, Usage
from .prompt import common_prefix, prompt_tokens
from .request import Request
from .sequence import Seq

# Prompt chunks at least this long are decoded with llama.cpp's abort callback armed, so that a
# cancel stops prompt evaluation mid-chunk instead of after it.
_ABORTABLE_CHUNK = 32
# Sequence ids of a shared cache: more than run at once, so idle ones keep their prompts cached
UNIFIED_SLOTS = 16


def slots_for(n_parallel: int, unified: bool) -> int:
    """How many sequence ids a context gets for ``n_parallel`` sequences decoded at once."""
    return max(n_parallel, UNIFIED_SLOTS) if unified else n_parallel


class Batching:
    """The worker's decode loop over the active sequences (mixed into ``Engine``)."""

    # state owned by Engine.__init__
    n_parallel: int
    _model: Any
    _info: Optional[ModelInfo]
    _active: list[Seq]
    _paused: list[Seq]
    _slot_tokens: list[list[int]]
    _slot_used: list[float]
    _slot_lora: list[tuple]
    _stash: Any  # Stash: idle slots' cells, out of a shared cache
    _adapters: Any
    _last_lora: tuple = ()  # the adapter set of the last step that had a choice (round robin)
    _lock: threading.Lock
    stats: dict[str, int]
    requests_served: int
    tokens_generated: int
    last_tokens_per_s: Optional[float]
    last_activity: float

    def _require_model(self) -> Any:
        raise NotImplementedError

    def _start(self, req: Request) -> None:
        if req.cancelled:  # stopped while waiting its turn: an empty reply, reported like any other
            self.requests_served += 1
            self.stats["requests_cancelled"] += 1
            req.deliver(self._completion_for(req, "", "cancelled", Usage(), Timings(), req.spec.params))
            return
        model = self._require_model()
        spec = req.spec
        tokens = prompt_tokens(model, spec)
        params = spec.params

        from .sampler import Sampler

        lora = self._adapters.resolve(spec.lora)  # before any cache change: may raise for an unknown name
        slot = self._pick_slot(tokens, lora)
        self._slot_used[slot] = time.monotonic()
        common = self._reuse_prefix(model, slot, tokens, lora)
        req.prompt_total, req.prompt_cached, req.admitted = len(tokens), common, time.perf_counter()
        sampler = Sampler(params, model.n_vocab, model.vocab, grammar=spec.grammar, n_ctx=model.n_ctx_seq)
        sampler.accept_prompt_tokens(tokens)  # penalties see the prompt's last 64, DRY its whole window
        max_tokens = params.max_tokens if params.max_tokens and params.max_tokens > 0 else model.n_ctx_seq
        seq = Seq(
            req=req,
            slot=slot,
            sampler=sampler,
            params=params,
            prompt=tokens,
            pending=tokens[common:],
            n_cached=common,
            t_admit=time.perf_counter(),
            stops=list(params.stop or []),
            max_tokens=max_tokens,
            lora=lora,
        )
        with self._lock:
            self._active.append(seq)
        self._stash_idle()

    def _reuse_prefix(self, model, slot: int, tokens: list[int], lora: tuple = ()) -> int:
        """Keep (or borrow from another sequence) the longest cached prefix of ``tokens``; returns its length.

        A shared system prompt or template prefix is evaluated once: a new sequence takes the
        cells another one already holds (copied, which costs far less than evaluating them), and
        evaluates only the rest. Only cells written with the same LoRA set (``lora``) count: an
        adapter changes every layer's keys and values.
        """
        if self._slot_lora[slot] != lora:
            self._forget_slot(slot)
            self._slot_lora[slot] = lora
        cached = self._slot_tokens[slot]
        common = common_prefix(cached, tokens)
        donor, best = slot, common
        for i, other in enumerate(self._slot_tokens):
            if i != slot and self._slot_lora[i] == lora:
                n = common_prefix(other, tokens)
                # an equal prefix in the cache beats one stashed in RAM: it is shared, not copied back
                if n > best or (n == best > common and donor in self._stash and i not in self._stash):
                    donor, best = i, n
        best = min(best, len(tokens) - 1)  # at least one token must be evaluated to get logits
        if donor != slot and best > common:
            if donor not in self._stash:
                model.copy_prefix(donor, slot, best)
            elif self._stash.restore(model.ctx, donor, slot):
                model.seq_rm(slot, best, -1)
                self.stats["cache_restored"] += 1
            else:  # no room for the donor's cells (and the slot's own are gone): read the prompt
                self._forget_slot(slot)
                return 0
            self._stash.drop(slot)
            self._slot_tokens[slot] = list(tokens[:best])
            self.stats["prefix_tokens_shared"] += best
            return best
        common = min(common, len(tokens) - 1)
        if slot in self._stash:
            if common and self._stash.restore(model.ctx, slot, slot):
                self.stats["cache_restored"] += 1
            else:
                model.seq_rm(slot, 0, -1)
                common = 0
            self._stash.drop(slot)
        if not model.seq_rm(slot, common, -1):
            model.seq_rm(slot, 0, -1)  # e.g. sliding-window caches cannot drop a suffix
            common = 0
        del cached[common:]
        return common

    def _forget_slot(self, slot: int) -> None:
        """Drop what ``slot`` holds, in the cache or stashed."""
        self._model.seq_rm(slot, 0, -1)
        self._slot_tokens[slot].clear()
        self._stash.drop(slot)

    def _stash_idle(self) -> None:
        """While sequences are decoded, move the cells of idle slots of a shared cache to RAM
        (``stash.py``: they slow every step), dropping the slots used longest ago beyond its budget."""
        model = self._model
        if not model.unified:  # a stream per sequence: attention reads only the sequence's own cells
            return
        busy = {s.slot for s in self._active + self._paused}
        for i, held in enumerate(self._slot_tokens):
            if held and i not in busy and i not in self._stash:
                if self._stash.save(model.ctx, i):
                    self.stats["cache_stashed"] += 1
                    model.seq_rm(i, 0, -1)
                else:
                    self._forget_slot(i)
        while self._stash.bytes > self._stash.budget:
            oldest = min(self._stash.slots(), key=lambda i: self._slot_used[i])
            self._forget_slot(oldest)
            self.stats["cache_evictions"] += 1

    def _pick_slot(self, tokens: list[int], lora: tuple = ()) -> int:
        busy = {s.slot for s in self._active + self._paused}
        free = [i for i in range(len(self._slot_tokens)) if i not in busy]
        if not self._model.unified:
            # The lowest free slot: llama.cpp decodes a batch of per-sequence KV streams in one
            # ubatch only while their ids are consecutive (a gap splits it in two, about 25%
            # slower), and _reuse_prefix borrows a cached prefix from any slot anyway.
            return min(free)
        # Shared cache: the slot whose cells this prompt continues (a conversation's earlier
        # turns), else an empty one, else the one used longest ago, so that other requests do not
        # overwrite a cached conversation. (A prefix held elsewhere is borrowed anyway.)
        def gain(i: int) -> tuple[int, float]:
            cached = self._slot_tokens[i] if self._slot_lora[i] == lora else []
            common = common_prefix(cached, tokens)
            return max(common - (len(cached) - common), 0), -self._slot_used[i]

        return max(free, key=gain)

    def _make_room(self) -> bool:
        """The shared cache is full: free cells for the running sequences. False: nothing to free."""
        model = self._model
        busy = {s.slot for s in self._active + self._paused}
        idle = [i for i, t in enumerate(self._slot_tokens) if t and i not in busy and i not in self._stash]
        if idle:
            self._forget_slot(min(idle, key=lambda i: self._slot_used[i]))  # used longest ago
            self.stats["cache_evictions"] += 1
            return True
        if len(self._active) < 2:
            return False
        s = max(self._active, key=lambda s: s.t_admit)  # the newest waits: the others finish first
        cached = self._slot_tokens[s.slot]
        if s.prefilling:
            s.pending = cached + s.pending
        else:
            s.pending, s.recompute = list(cached), True  # its last token is decoded after them
        model.seq_rm(s.slot, 0, -1)
        self._slot_tokens[s.slot] = []
        with self._lock:
            self._active.remove(s)
        self._paused.append(s)
        self.stats["sequences_paused"] += 1
        return True

    def _resume(self) -> None:
        """Paused sequences go back to work, oldest first, once they fit beside the running ones."""
        model = self._model
        while self._paused:
            s = self._paused[0]
            if s.req.cancelled:
                self._paused.pop(0)
                with self._lock:
                    self._active.append(s)
                self._finish(s, "cancelled")
                continue
            used = sum(len(self._slot_tokens[a.slot]) + len(a.pending) + 1 for a in self._active)
            if self._active and (len(self._active) >= self.n_parallel or used + len(s.pending) + 1 > model.n_ctx):
                return
            self._paused.pop(0)
            with self._lock:
                self._active.append(s)

    def _step(self) -> None:
        if len(self._active) == 1 and not self._paused:
            s = self._active[0]
            if not s.pending and not s.req.cancelled:
                self._step_one(s)
                return
        model = self._model
        for s in list(self._active):
            if s.req.cancelled:
                self._finish(s, "cancelled")
        if self._paused:
            self._resume()
        if not self._active:
            return
        lora = self._lora_turn()
        tokens: list[int] = []
        seqs: list[int] = []
        pos: list[int] = []
        want: list[bool] = []
        owners: list[tuple[Seq, int]] = []
        generating: list[Seq] = []
        budget = model.n_batch
        # Generating sequences first (one token each), so a long prompt never stalls their stream.
        for s in sorted(self._active, key=lambda s: s.slot):
            if not s.prefilling and s.lora == lora:
                generating.append(s)
                owners.append((s, len(tokens)))
                tokens.append(s.last_token)
                seqs.append(s.slot)
                pos.append(len(self._slot_tokens[s.slot]))
                want.append(True)
                budget -= 1
        prefill: list[tuple[Seq, int]] = []
        for s in self._active:
            if s.prefilling and budget > 0 and s.lora == lora:
                # The last prompt token is always decoded on its own: its logits then come from the
                # same kernels whether or not the rest of the prompt was cached, so a seed replays
                # exactly (batched matmuls differ from single-token ones in the last bits).
                n = len(s.pending) if len(s.pending) == 1 else min(budget, len(s.pending) - 1)
                chunk = s.pending[:n]
                start = len(self._slot_tokens[s.slot])
                last = len(chunk) == len(s.pending)
                for i, t in enumerate(chunk):
                    tokens.append(t)
                    seqs.append(s.slot)
                    pos.append(start + i)
                    want.append(last and i == len(chunk) - 1 and not s.recompute)
                if last and not s.recompute:  # a resumed sequence already has its next token
                    owners.append((s, len(tokens) - 1))
                prefill.append((s, len(chunk)))
                budget -= len(chunk)
        if not tokens:
            return

        abort = None
        if any(n >= _ABORTABLE_CHUNK for _, n in prefill):
            watched = [s.req for s, _ in prefill]
            abort = lambda: any(r.cancelled for r in watched)  # noqa: E731
        self._adapters.apply(model.ctx, lora)
        rc = model.decode(tokens, seqs, pos, want, abort=abort)
        if rc == 2:  # aborted: drop whatever part of the chunks reached the cache
            for s in list(self._active):
                model.seq_rm(s.slot, len(self._slot_tokens[s.slot]), -1)
                if s.req.cancelled:
                    self._finish(s, "cancelled")
            return
        if rc != 0:
            self._decode_failed(rc)
            return

        now = time.perf_counter()
        for s, n in prefill:
            self._slot_tokens[s.slot].extend(s.pending[:n])
            del s.pending[:n]
            if s.recompute:
                s.recompute = bool(s.pending)  # all back in the cache: it generates again
                continue
            if not s.pending:
                s.t_prompt_done = now
                s.req.prompt_done.set()
            if len(s.prompt) - s.n_cached > model.n_batch:  # a prompt read over several steps
                s.req.progress(len(s.prompt) - len(s.pending), len(s.prompt))
        for s in generating:
            self._slot_tokens[s.slot].append(s.last_token)
        self._count_step(len(tokens), len(generating) + len(prefill))
        for s, idx in owners:
            self._take_token(s, idx)

    def _step_one(self, s: Seq) -> None:
        """``_step`` for one generating sequence alone (a single stream): the same work, without
        packing a batch. Only the Python between two decodes separates lmnb from llama.cpp's own
        speed here (~60 µs of a 6 ms token on a small model), so this path stays short."""
        model = self._model
        self._adapters.apply(model.ctx, s.lora)
        cells = self._slot_tokens[s.slot]
        rc = model.decode_one(s.last_token, s.slot, len(cells))
        if rc != 0:
            self._decode_failed(rc)
            return
        cells.append(s.last_token)
        self._count_step(1, 1)
        self._take_token(s, 0)

    def _decode_failed(self, rc: int) -> None:
        """After llama_decode's error ``rc``: make room in a full shared cache, else fail the active."""
        model = self._model
        for s in list(self._active):
            model.seq_rm(s.slot, len(self._slot_tokens[s.slot]), -1)
        if rc == 1 and model.unified and self._make_room():
            return  # the same step again, with room
        why = "the KV cache is full" if rc == 1 else f"llama_decode returned {rc}"
        for s in list(self._active):
            self._fail(s, GenerationError(f"Generation failed: {why}."))

    def _count_step(self, n_tokens: int, n_sequences: int) -> None:
        stats = self.stats
        stats["decode_calls"] += 1
        stats["decoded_tokens"] += n_tokens
        stats["sequences_decoded"] += n_sequences

    def _take_token(self, s: Seq, idx: int) -> None:
        """Sample ``s``'s next token from batch position ``idx`` (with its logprobs) and go on."""
        tok = self._next_token(s, idx)
        if s.req.spec.logprobs is not None and not self._model.is_eog(tok):
            s.req.logprobs.append(self._model.logprob_entry(idx, tok, s.req.spec.logprobs))
        self._on_token(s, tok)

    def _lora_turn(self) -> tuple:
        """The adapter set this step decodes: llama.cpp applies one set to a whole batch, so
        sequences that want different sets take turns, one step each (the base included)."""
        keys = sorted({s.lora for s in self._active})
        if len(keys) == 1:
            return keys[0]
        last = self._last_lora
        later = [k for k in keys if k > last]
        key = later[0] if later else keys[0]
        if key != last:
            self.stats["lora_switches"] += 1
        self._last_lora = key
        return key

    def _next_token(self, s: Seq, idx: int) -> int:
        """The sampled token, or the next one of text forced in (the end of a reasoning budget)."""
        if s.forced or (s.req.spec.think_markers is not None and self._thinking_over(s)):
            tok = s.forced[0]
            if s.sampler.accept_forced(tok):
                del s.forced[0]
                return tok
            s.forced.clear()  # the reply's grammar refuses it: let the model go on
        return s.sampler.sample(self._model.ctx, idx)

    def _thinking_over(self, s: Seq) -> bool:
        """Whether a reasoning model has used its thinking budget: then its close marker is forced."""
        spec, budget = s.req.spec, s.params.reasoning_budget
        if spec.think_markers is None or s.think_done or budget is None or budget < 0:
            return False
        opening, close = spec.think_markers
        seen = s.text + s.held
        if close in seen:
            s.think_done = True
            return False
        head = seen.lstrip()
        if not spec.think_inside and not head.startswith(opening):
            if head and not opening.startswith(head[: len(opening)]):
                s.think_done = True  # it answered without thinking
            return False
        if len(s.generated) < budget:
            return False
        s.think_done = True
        s.forced = self._model.tokenize(f"\n{close}\n\n", add_special=False, parse_special=True)
        return bool(s.forced)

    def _on_token(self, s: Seq, tok: int) -> None:
        model = self._model
        if not s.generated:
            s.t_first = time.perf_counter()
        if model.is_eog(tok):
            self._finish(s, "stop")
            return
        s.generated.append(tok)
        self.tokens_generated += 1
        s.last_token = tok
        if s.add_piece(model.piece(tok, s.req.spec.keep_special)):
            self._finish(s, "stop")
            return
        if len(s.generated) >= s.max_tokens or len(self._slot_tokens[s.slot]) + 1 >= model.n_ctx_seq:
            self._finish(s, "length")

    def _finish(self, s: Seq, reason: str) -> None:
        s.flush()
        now = time.perf_counter()
        n_prompt_eval = len(s.prompt) - s.n_cached
        t_prompt_done = s.t_prompt_done or now
        prompt_s = max(t_prompt_done - s.t_admit, 1e-9)
        gen_s = max(now - t_prompt_done, 1e-9)
        n_gen = len(s.generated)
        timings = Timings(
            queued_s=s.t_admit - s.req.submitted,
            ttft_s=(s.t_first - s.req.submitted) if s.t_first else 0.0,
            prompt_s=prompt_s,
            generation_s=gen_s,
            prompt_tokens_per_s=n_prompt_eval / prompt_s if n_prompt_eval else 0.0,
            generation_tokens_per_s=n_gen / gen_s if n_gen else 0.0,
        )
        usage = Usage(prompt_tokens=len(s.prompt), completion_tokens=n_gen, cached_tokens=s.n_cached)
        result = self._completion_for(s.req, s.text, reason, usage, timings, s.params)
        result.lora = dict(s.lora)
        self._retire(s)
        self._slot_used[s.slot] = time.monotonic()
        if reason == "cancelled" and self._model is not None:
            # a stopped sequence's cells go back to the others at once (a cancelled batch frees all)
            self._forget_slot(s.slot)
        if n_gen:
            self.last_tokens_per_s = timings.generation_tokens_per_s
        self.requests_served += 1
        self.stats["prompt_tokens"] += len(s.prompt)
        self.stats["prompt_tokens_evaluated"] += n_prompt_eval
        self.stats["generated_tokens"] += n_gen
        self.stats["requests_" + reason] = self.stats.get("requests_" + reason, 0) + 1
        if self._active or self._paused:
            self._stash_idle()
        s.req.deliver(result)

    def _fail(self, s: Seq, error: BaseException) -> None:
        self._retire(s)
        self.stats["requests_error"] += 1
        s.req.fail(error)

    def _retire(self, s: Seq) -> None:
        with self._lock:
            if s in self._active:
                self._active.remove(s)
        s.sampler.close()
        self.last_activity = time.monotonic()

    def _completion_for(self, req, text, reason, usage, timings, params) -> Completion:
        return Completion(
            text=text,
            finish_reason=reason,
            usage=usage,
            timings=timings,
            model=self._info.name if self._info else "",
            params=params,
            request_id=req.id,
            logprobs=list(req.logprobs) if req.spec.logprobs is not None else None,
        )
