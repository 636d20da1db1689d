"""Looking inside a model, for teaching: tokens, next-token probabilities, side-by-side replies.

- ``token_view``: ``lmnb.tokens()`` and ``lmnb.token_probs()``, and ``%%lm --show-probs``.
- ``distribution``: the next-token distribution under a sampling setting (the explorer's chart).
- ``comparison``: ``lmnb.compare()`` across models, settings or seeds.
"""
