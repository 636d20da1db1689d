"""The kernel-side engine: one worker thread owning the llama.cpp model and context."""

from .engine import Engine, resolve_sampling
from .request import GenerationSpec, Request, Stage

__all__ = ["Engine", "GenerationSpec", "Request", "Stage", "resolve_sampling"]
