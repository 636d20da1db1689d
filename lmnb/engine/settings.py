"""The session defaults an engine applies to what callers leave unset (from the ``LM`` config)."""

from __future__ import annotations

import random
from typing import Optional

from ..types import LoadOptions, SamplingParams


def resolve_sampling(params: Optional[SamplingParams]) -> SamplingParams:
    """Fill unset fields from the session defaults, validate, and pick a seed if none is fixed."""
    from ..config import get_config
    from ..types import SAMPLING_FIELDS

    cfg = get_config()
    defaults = SamplingParams(**{name: getattr(cfg, name) for name in SAMPLING_FIELDS})
    defaults.stop = list(cfg.stop) or None
    defaults.logit_bias = dict(cfg.logit_bias) or None
    p = (params or SamplingParams()).merged(defaults).validate()
    if p.seed is None or p.seed == -1:
        p.seed = random.getrandbits(32)  # recorded in the result, so any reply can be reproduced
    return p


def resolve_load_options(opts: LoadOptions) -> LoadOptions:
    from ..config import get_config

    cfg = get_config()
    out = LoadOptions(
        n_ctx=cfg.n_ctx if opts.n_ctx is None else opts.n_ctx,
        n_gpu_layers=cfg.n_gpu_layers if opts.n_gpu_layers is None else opts.n_gpu_layers,
        n_threads=cfg.n_threads if opts.n_threads is None else opts.n_threads,
        n_batch=cfg.n_batch if opts.n_batch is None else opts.n_batch,
        n_parallel=cfg.n_parallel if opts.n_parallel is None else opts.n_parallel,
        batch_invariant=cfg.batch_invariant if opts.batch_invariant is None else opts.batch_invariant,
        flash_attn=cfg.flash_attn if opts.flash_attn is None else opts.flash_attn,
        use_mmap=cfg.use_mmap if opts.use_mmap is None else opts.use_mmap,
        seed=cfg.load_seed if opts.seed is None else opts.seed,
        chat_template=(cfg.chat_template or None) if opts.chat_template is None else opts.chat_template,
    )
    if out.n_ctx is not None and out.n_ctx < 0:
        raise ValueError(f"n_ctx={out.n_ctx}: must be >= 0 (0 = the model's trained context)")
    if not 1 <= out.n_parallel <= 64:
        raise ValueError(f"n_parallel={out.n_parallel}: must be between 1 and 64")
    if out.n_batch is not None and out.n_batch < 1:
        raise ValueError(f"n_batch={out.n_batch}: must be >= 1")
    if out.n_threads is not None and out.n_threads < 0:
        raise ValueError(f"n_threads={out.n_threads}: must be >= 0 (0 = physical cores)")
    g = out.n_gpu_layers
    if isinstance(g, str) and g not in ("auto", "max"):
        try:
            out.n_gpu_layers = int(g)
        except ValueError:
            raise ValueError(f"n_gpu_layers={g!r}: expected an integer, 'auto' or 'max'") from None
    return out
