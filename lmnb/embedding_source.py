"""Which model embeds: the rule shared by ``lmnb.embed``, document libraries and ``chat(docs=)``.

It takes the engine as an argument (it imports nothing above the engine), so that the API can
use it as well as the verbs built over the API.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from .config import get_config
from .errors import NoModelLoaded
from .types import LoadOptions, ModelInfo

if TYPE_CHECKING:
    from .engine import Engine


def embedding_source(engine: "Engine", model: Optional[str] = None) -> tuple[str, ModelInfo]:
    """The ``source`` to pass to ``engine.embed`` and the info of the model it names.

    ``model`` (a name or path, as for ``load``) is loaded beside the chat model if needed;
    ``None`` means the embedding model already loaded, else ``LM.embedding_model`` when set,
    else the loaded chat model (the mean of its hidden states).

    Raises:
        NoModelLoaded: no model is loaded and none is named.
    """
    wanted = model or (engine.embedder_info is None and get_config().embedding_model) or None
    if wanted:
        from .sources.library import resolve

        path = os.path.abspath(resolve(wanted, download=True))
        if engine.info is not None and engine.info.path == path:
            return "chat", engine.info  # the chat model itself: no second copy of its weights
        if engine.embedder_info is None or engine.embedder_info.path != path:
            engine.load_embedder(path, LoadOptions())
        return "embedder", engine.embedder_info
    if engine.embedder_info is not None:
        return "embedder", engine.embedder_info
    if not engine.loaded:
        raise NoModelLoaded()
    return "chat", engine.info
