"""The next-token distribution and what the sampling parameters do to it, step by step.

The model gives one score (logit) per vocabulary token. lmnb's sampler (``engine/sampler.py``)
then applies, in this order: top-k, top-p, min-p (on the model's own probabilities), then the
temperature, then draws. ``shape`` does the same with numpy, keeping what each step removed, so a
teaching view can show the distribution before and after, and grey out the tokens each filter
drops. Only the current position's logits are used (one vector of ``n_vocab`` floats).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FILTERS = ("top_k", "top_p", "min_p")


@dataclass
class Distribution:
    """A next-token distribution after the sampling parameters.

    ``order``: token ids, most likely first (by the model's own probability).
    ``model_probs``: the model's probabilities (softmax of the logits), in ``order``.
    ``probs``: the probabilities the draw uses (after the filters and the temperature; 0 for
    removed tokens), in ``order``; they sum to 1.
    ``removed_by``: for each token in ``order``, the filter that removed it (``""`` = kept).
    """

    order: np.ndarray
    model_probs: np.ndarray
    probs: np.ndarray
    removed_by: np.ndarray
    temperature: float

    @property
    def kept(self) -> int:
        return int((self.removed_by == "").sum())

    def greedy(self) -> int:
        """The most likely token (what temperature 0 always takes)."""
        return int(self.order[0])

    def sample(self, rng: np.random.Generator) -> int:
        """Draw one token id with ``rng`` (a seeded generator gives the same draws again)."""
        return int(self.order[rng.choice(len(self.order), p=self.probs)])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max())
    return z / z.sum()


def shape(logits: np.ndarray, *, temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95,
          min_p: float = 0.05) -> Distribution:  # fmt: skip
    """Apply top-k, top-p, min-p and the temperature to ``logits``, as lmnb's sampler does.

    ``top_k`` 0, ``top_p`` 1 and ``min_p`` 0 switch a filter off. At least one token always
    stays. Temperature 0 puts all the probability on the most likely token.
    """
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: must be >= 0")
    if top_k < 0 or not 0 < top_p <= 1 or not 0 <= min_p <= 1:
        raise ValueError("top_k must be >= 0, top_p in (0, 1], min_p in [0, 1]")
    logits = np.asarray(logits, dtype=np.float64)
    order = np.argsort(-logits, kind="stable")
    z = logits[order]
    model_probs = softmax(z)
    removed = np.full(len(z), "", dtype=object)
    n = len(z)  # the candidates left are order[:n]: every filter keeps a prefix of the ranking
    if top_k > 0 and top_k < n:
        removed[top_k:n] = "top_k"
        n = top_k
    if top_p < 1.0:
        # the smallest set whose probability (among the candidates left) reaches top_p
        p = softmax(z[:n])
        keep = int(np.searchsorted(np.cumsum(p), top_p) + 1)
        keep = min(max(keep, 1), n)
        removed[keep:n] = "top_p"
        n = keep
    if min_p > 0.0:
        # tokens at least min_p times as likely as the best one: logit >= best + log(min_p)
        keep = max(int((z[:n] >= z[0] + np.log(min_p)).sum()), 1)
        removed[keep:n] = "min_p"
        n = keep
    probs = np.zeros(len(z))
    if temperature == 0 or n == 1:
        probs[0] = 1.0
    else:
        probs[:n] = softmax(z[:n] / temperature)
    return Distribution(order=order, model_probs=model_probs, probs=probs, removed_by=removed,
                        temperature=temperature)  # fmt: skip


def top(dist: Distribution, k: int = 20) -> list[tuple[int, float, float, str]]:
    """The ``k`` most likely tokens: (id, model probability, probability after sampling, removed by)."""
    k = min(k, len(dist.order))
    return [(int(dist.order[i]), float(dist.model_probs[i]), float(dist.probs[i]), str(dist.removed_by[i]))
            for i in range(k)]  # fmt: skip


def entropy_bits(probs: np.ndarray) -> float:
    """How spread out a distribution is, in bits (0 = certain)."""
    p = probs[probs > 0]
    return float(-(p * np.log2(p)).sum())

