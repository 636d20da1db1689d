"""The one source of truth for defaults: a traitlets ``Configurable`` named ``LM``.

``%config LM.n_ctx = 4096``, ``c.LM.temperature = 0.2`` in ``ipython_config.py``, ``%lm set
temperature=0.2`` and ``lmnb.configure(temperature=0.2)`` all change the same object.
"""

from __future__ import annotations

import os
from typing import Any

from traitlets import Bool, CInt, Dict, Float, Int, List, TraitError, Unicode, Union, validate
from traitlets.config import SingletonConfigurable

from .params import BY_NAME, LOAD, SAMPLING, Param


def _default_data_dir() -> str:
    from platformdirs import user_data_dir

    return user_data_dir("lmnb", appauthor=False)


def _traits(params: tuple[Param, ...]) -> dict[str, Any]:
    """One configurable trait per declared parameter, with its default and help."""
    kinds = {float: Float, int: Int, bool: Bool, str: Unicode}
    out: dict[str, Any] = {}
    for p in params:
        if p.type is list:
            trait = List(Unicode(), default_value=list(p.default), help=p.help)
        elif p.type is dict:
            trait = Dict(default_value=dict(p.default), help=p.help)
        else:
            trait = kinds[p.type](p.default, help=p.help)
        out[p.name] = trait.tag(config=True)
    return out


class LM(SingletonConfigurable):
    """lmnb session defaults: load options, sampling parameters, logging and history."""

    # --- load options and sampling: declared once, in lmnb.params ----------------------------
    locals().update(_traits(LOAD + SAMPLING))
    n_gpu_layers = Union(
        [Int(), Unicode()], default_value=BY_NAME["n_gpu_layers"].default, help=BY_NAME["n_gpu_layers"].help
    ).tag(config=True)
    embedding_model = Unicode(
        "",
        help="Model for lmnb.embed and /v1/embeddings, loaded beside the chat model on first use "
        "('' = the loaded chat model).",
    ).tag(config=True)
    load_seed = Int(-1, help="Default seed stored with a loaded model (-1 = random per request).").tag(config=True)
    default_model = Unicode("", help="Model loaded by `%lm load` with no argument ('' = the bundled starter model).").tag(
        config=True
    )

    system_prompt = Unicode("", help="Default system prompt for `%%lm chat` ('' = the template's own).").tag(config=True)

    # --- notebook behaviour -------------------------------------------------------------------
    stream = Bool(True, help="Stream replies into the cell token by token.").tag(config=True)
    markdown = Bool(True, help="Render replies as Markdown.").tag(config=True)

    # --- OpenAI-compatible server -------------------------------------------------------------
    server_host = Unicode("127.0.0.1", help="Address `%lm serve` binds (0.0.0.0 exposes it to the network).").tag(
        config=True
    )
    server_port = Int(1234, help="Port of `%lm serve` (0 = any free port).").tag(config=True)
    server_api_key = Unicode("", help="API key clients must send as 'Authorization: Bearer KEY' ('' = none).").tag(
        config=True
    )
    server_cors = List(Unicode(), default_value=[], help="Origins allowed to call the server from a browser.").tag(
        config=True
    )
    server_allowed_hosts = List(
        Unicode(),
        default_value=[],
        help="Names clients may address the server by (its Host header) besides localhost, 127.0.0.1 and [::1]; "
        "other names are refused, which blocks DNS-rebinding attacks from web pages ('*' = any name).",
    ).tag(config=True)

    # --- several models ----------------------------------------------------------------------
    jit_load = Bool(
        False, help="A server request naming a local model that is not loaded loads it (after a memory check); "
        "`lmnb serve` turns it on."
    ).tag(config=True)
    idle_unload = Float(
        0.0, help="Seconds after which a model loaded on demand by a request is unloaded when idle (0 = never)."
    ).tag(config=True)
    strict_model_names = Bool(
        False, help="A server request naming no known model gets 404 (default: it goes to the default model, "
        "and the reply's `model` names the one that answered)."
    ).tag(config=True)

    # --- logs and history ---------------------------------------------------------------------
    log_level = Unicode("info", help="Lowest llama.cpp log level kept: debug, info, warn or error.").tag(config=True)
    log_buffer_size = CInt(2000, help="How many llama.cpp log lines to keep.").tag(config=True)
    history = Bool(True, help="Record every generation in the history database.").tag(config=True)
    history_path = Unicode(
        "", help="SQLite file for the generation history ('' = history.sqlite in the user data dir)."
    ).tag(config=True)
    presets_path = Unicode(
        "", help="JSON file of saved sampling presets ('' = presets.json in the user config dir)."
    ).tag(config=True)
    models_dir = Unicode("", help="Extra directory searched for .gguf files.").tag(config=True)
    scan_other_apps = Bool(
        True, help="List (and load) the models LM Studio and Ollama downloaded; lmnb never deletes them."
    ).tag(config=True)
    # the document library (lmnb.docs)
    docs_dir = Unicode("", help="Folder of the document libraries ('' = docs/ in the user data dir).").tag(config=True)
    docs_chunk_tokens = Int(256, help="Tokens per indexed chunk of a document.").tag(config=True)
    docs_chunk_overlap = Int(32, help="Tokens a chunk repeats from the one before it.").tag(config=True)
    docs_max_file_mb = Float(50.0, help="Larger files are skipped when indexing documents.").tag(config=True)
    docs_context_tokens = Int(
        0, help="Tokens of documents put in a `docs=` chat (0 = half of what the chat leaves free)."
    ).tag(config=True)

    @validate("n_gpu_layers")
    def _check_gpu_layers(self, proposal: Any) -> Any:
        value = proposal["value"]
        if isinstance(value, str):
            if value in ("auto", "max"):
                return value
            try:
                value = int(value)
            except ValueError:
                raise TraitError(f"n_gpu_layers must be an integer, 'auto' or 'max', not {value!r}") from None
        if value < -1:
            raise TraitError("n_gpu_layers must be >= 0 (or -1 / 'max' for all layers)")
        return value

    @validate(*(p.name for p in SAMPLING + LOAD if p.type in (int, float) or p.choices))
    def _check_range(self, proposal: Any) -> Any:
        try:
            return BY_NAME[proposal["trait"].name].check(proposal["value"])
        except ValueError as e:
            raise TraitError(str(e)) from None

    @validate("logit_bias")
    def _check_logit_bias(self, proposal: Any) -> Any:
        from .params import check_logit_bias

        try:
            return check_logit_bias(proposal["value"])
        except ValueError as e:
            raise TraitError(str(e)) from None

    @validate("log_level")
    def _check_log_level(self, proposal: Any) -> str:
        value = str(proposal["value"]).lower()
        if value not in ("debug", "info", "warn", "warning", "error"):
            raise TraitError(f"log_level must be debug, info, warn or error, not {value!r}")
        return "warn" if value == "warning" else value

    def resolved_history_path(self) -> str:
        return self.history_path or os.path.join(_default_data_dir(), "history.sqlite")


def get_config() -> LM:
    """The session's ``LM`` configuration object (created on first use)."""
    return LM.instance()


def configure(**values: Any) -> LM:
    """Set session defaults: ``lmnb.configure(temperature=0.2, n_ctx=8192)``."""
    cfg = get_config()
    for name, value in values.items():
        if not cfg.has_trait(name) or not cfg.trait_metadata(name, "config"):
            known = ", ".join(sorted(cfg.class_own_traits(config=True)))
            raise ValueError(f"unknown setting {name!r}; settings are: {known}")
        setattr(cfg, name, value)
    return cfg
