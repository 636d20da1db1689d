"""The kernel-side engine: one worker thread owning the llama.cpp model and context."""

from .engine import Engine, resolve_sampling
from .request import GenerationSpec, Request

__all__ = ["Engine", "GenerationSpec", "Request", "resolve_sampling"]
