"""The interface every generation backend implements: the in-kernel ``Engine`` (one per loaded
model) and the ``RemoteBackend`` (another OpenAI-compatible server). ``lmnb.api`` and the faces
over it use only these members."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence, runtime_checkable

from .types import Completion, ModelInfo, Status

if TYPE_CHECKING:
    from .engine.request import GenerationSpec, Request, Stage


@runtime_checkable
class Backend(Protocol):
    """What serves requests. ``submit`` returns at once; the ``Request`` streams the reply."""

    n_parallel: int  # requests decoded side by side
    tokens_generated: int  # every token sampled so far (monitors take its rate)
    last_tokens_per_s: Optional[float]
    requests_served: int

    @property
    def loaded(self) -> bool: ...

    @property
    def info(self) -> Optional[ModelInfo]: ...  # the GGUF file's info; None for a remote server

    def submit(self, spec: "GenerationSpec", *, stages: Sequence["Stage"] = (),
               on_done: Sequence[Callable[[Completion], None]] = ()) -> "Request": ...  # fmt: skip

    def status(self) -> Status: ...
