"""Exceptions with messages meant for the person at the notebook."""


class LmnbError(Exception):
    """Base class for every error lmnb raises on purpose."""


class LoadError(LmnbError):
    """A model could not be loaded (missing file, not GGUF, truncated, unsupported...)."""


class NoModelLoaded(LmnbError):
    """A generation was requested but no model is loaded."""

    def __init__(self, message: str = "No model is loaded. Run `%lm load` (or `lmnb.load()`) first.") -> None:
        super().__init__(message)


class ContextOverflow(LmnbError):
    """The prompt does not fit in the model's context window."""


class GenerationError(LmnbError):
    """llama.cpp failed while generating."""


class HubError(LmnbError):
    """Searching or downloading from Hugging Face failed (offline, no access, no such repo or file...)."""


class DownloadCancelled(HubError):
    """A download was cancelled (button or kernel interrupt); its bytes are kept for a resume."""


class StructuredOutputError(LmnbError):
    """A reply asked for as JSON matching a schema could not be parsed (cut off, cancelled, invalid).

    ``text`` is the reply as generated, ``finish_reason`` why it ended, and ``completion`` the whole
    ``Completion`` when the caller had one (``lmnb.chat(..., schema=...)`` sets it).
    """

    def __init__(self, message: str, text: str = "", finish_reason: str = "", completion: object = None) -> None:
        super().__init__(message)
        self.text, self.finish_reason, self.completion = text, finish_reason, completion
