"""The one source of truth for defaults: a traitlets ``Configurable`` named ``LM``.

``%config LM.n_ctx = 4096``, ``c.LM.temperature = 0.2`` in ``ipython_config.py``, ``%lm set
temperature=0.2`` and ``lmnb.configure(temperature=0.2)`` all change the same object.
"""

from __future__ import annotations

import os
from typing import Any

from traitlets import Bool, CInt, Float, Int, List, Unicode, Union, validate, TraitError
from traitlets.config import SingletonConfigurable

from .types import SAMPLING_FIELDS


def _default_data_dir() -> str:
    from platformdirs import user_data_dir

    return user_data_dir("lmnb", appauthor=False)


class LM(SingletonConfigurable):
    """lmnb session defaults: load options, sampling parameters, logging and history."""

    # --- load options -------------------------------------------------------------------------
    n_ctx = Int(
        4096,
        help="Context length: how many tokens (prompt + reply) the model can see at once; more costs memory "
        "(0 = the model's trained length).",
    ).tag(config=True)
    n_gpu_layers = Union(
        [Int(), Unicode()],
        default_value="auto",
        help="Layers to run on the GPU: an integer (0 = CPU only), 'auto' (all of them when llama.cpp was built "
        "with GPU support) or 'max'.",
    ).tag(config=True)
    n_threads = Int(0, help="CPU threads for generation (0 = one per physical core).").tag(config=True)
    n_batch = Int(512, help="Prompt tokens evaluated per llama_decode call.").tag(config=True)
    n_parallel = Int(
        1,
        help="Requests decoded together in each step (continuous batching): concurrent server clients, "
        "widgets and cells run side by side instead of waiting in line. Each gets n_ctx / n_parallel of the "
        "context. lmnb.map raises it for its batch, then gives it back.",
    ).tag(config=True)
    flash_attn = Bool(
        True,
        help="Flash attention: a fused attention kernel that saves memory and time, used wherever the "
        "backend has it. It also keeps greedy replies identical whether decoded alone or in a batch.",
    ).tag(config=True)
    embedding_model = Unicode(
        "",
        help="Model for lmnb.embed and /v1/embeddings, loaded beside the chat model on first use "
        "('' = the loaded chat model).",
    ).tag(config=True)
    use_mmap = Bool(True, help="Memory-map the model file instead of reading it into RAM.").tag(config=True)
    load_seed = Int(-1, help="Default seed stored with a loaded model (-1 = random per request).").tag(config=True)
    chat_template = Unicode("", help="Jinja chat template overriding the one in the GGUF file.").tag(config=True)
    default_model = Unicode("", help="Model loaded by `%lm load` with no argument ('' = the bundled starter model).").tag(
        config=True
    )

    # --- sampling -----------------------------------------------------------------------------
    temperature = Float(
        0.8,
        help="Randomness: low values pick the likely tokens, high values take more chances "
        "(0 = always the most likely token, the same reply every time).",
    ).tag(config=True)
    top_p = Float(
        0.95,
        help="Nucleus sampling: keep only the most likely tokens whose probabilities add up to top_p (1 = off).",
    ).tag(config=True)
    top_k = Int(40, help="Keep only the k most likely tokens before sampling (0 = off).").tag(config=True)
    min_p = Float(
        0.05,
        help="Drop tokens less than min_p times as likely as the best one; adapts to how sure the model is (0 = off).",
    ).tag(config=True)
    repeat_penalty = Float(
        1.1, help="Make tokens seen in the last 64 (prompt included) less likely, against loops (1.0 = off)."
    ).tag(config=True)
    presence_penalty = Float(
        0.0, help="Push away from any token already used in the last 64, however often: new topics (0 = off)."
    ).tag(config=True)
    frequency_penalty = Float(
        0.0, help="Push away from tokens by how often they were used in the last 64: less repetition (0 = off)."
    ).tag(config=True)
    max_tokens = Int(
        1024, help="The longest reply, in tokens (-1 = until the model stops or the context is full)."
    ).tag(config=True)
    seed = Int(
        -1,
        help="Random seed: the same seed, prompt and settings give the same reply "
        "(-1 = a new seed per request; it is recorded).",
    ).tag(config=True)
    stop = List(Unicode(), default_value=[], help="Extra stop strings.").tag(config=True)
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

    @validate("log_level")
    def _check_log_level(self, proposal: Any) -> str:
        value = str(proposal["value"]).lower()
        if value not in ("debug", "info", "warn", "warning", "error"):
            raise TraitError(f"log_level must be debug, info, warn or error, not {value!r}")
        return "warn" if value == "warning" else value

    def resolved_history_path(self) -> str:
        return self.history_path or os.path.join(_default_data_dir(), "history.sqlite")

    # The sampling settings, also the fields of SamplingParams.
    SAMPLING = SAMPLING_FIELDS


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
