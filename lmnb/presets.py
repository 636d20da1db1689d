"""Sampling presets: named sets of sampling settings, built in or saved by the user.

>>> from lmnb import presets
>>> presets.apply("Precise")                 # sets the session defaults (the ``LM`` config)
>>> presets.save("my-notes")                 # the current sampling settings, under a name
>>> presets.presets()                        # {"Precise": {...}, "Balanced": {...}, ..., "my-notes": {...}}
>>> presets.delete("my-notes")

A preset holds sampling fields only (``SamplingParams`` minus ``seed``: a preset says *how* to
sample, a seed pins one particular reply). User presets live in one JSON file,
``LM.presets_path`` (default ``presets.json`` in the user config dir), rewritten atomically. A
damaged file never breaks anything: it is reported (a warning, or the ``ValueError`` of a save)
and the built-in presets keep working.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import unicodedata
import warnings
from typing import Any, Optional

from .params import SAMPLING, style_names
from .types import SAMPLING_FIELDS, SamplingParams

# The fields a preset may set.
FIELDS: tuple[str, ...] = tuple(f for f in SAMPLING_FIELDS if f != "seed")
_INT_FIELDS = tuple(p.name for p in SAMPLING if p.type is int)
_CHOICE_FIELDS = tuple(p.name for p in SAMPLING if p.choices)
_FILE_VERSION = 1
_MAX_NAME = 64
_lock = threading.Lock()  # one read-modify-write of the file at a time in this process


class PresetsFileWarning(UserWarning):
    """The user presets file could not be read (or held invalid entries); built-ins still work."""


def _defaults() -> dict[str, Any]:
    return {p.name: p.default for p in SAMPLING if p.style}


def _style(**values: Any) -> dict[str, Any]:
    """A complete style: ``values`` over the declared defaults (a sampler not named stays off)."""
    return {**_defaults(), **values}


# The "how to pick the next token" fields. Built-in presets set all of them, so switching presets
# fully decides the sampling style; they leave max_tokens and stop alone, which belong to the task
# (how long a reply, where it ends), not to the style.
_STYLE_FIELDS = style_names()

BUILTIN: dict[str, dict[str, Any]] = {
    # Facts, code, extraction: a low temperature sharpens the distribution towards the best token,
    # and top_k 20 / top_p 0.9 / min_p 0.1 cut the unlikely tail that a low temperature alone still
    # samples now and then. The repeat penalty is lighter than the default: code and data repeat
    # names on purpose, but small models at low temperature also fall into loops.
    "Precise": _style(temperature=0.2, top_p=0.9, top_k=20, min_p=0.1, repeat_penalty=1.05),
    # llama.cpp's usual defaults, which are also the LM config's (read from it, so they never drift).
    "Balanced": _defaults(),
    # Stories, brainstorming: a temperature above 1 flattens the distribution; top_k off and top_p
    # 0.98 keep nearly every candidate, and a low min_p (2% of the best token) is what still drops
    # the gibberish tail, which matters most at high temperature. A small presence penalty nudges
    # the text towards words it has not used yet.
    "Creative": _style(temperature=1.1, top_p=0.98, top_k=0, min_p=0.02, repeat_penalty=1.1, presence_penalty=0.2),
}


# ------------------------------------------------------------------------------------------------
# Storage
# ------------------------------------------------------------------------------------------------
def user_presets_path() -> str:
    """The JSON file of user presets: ``LM.presets_path``, else ``presets.json`` in the user config dir."""
    from .config import get_config

    path = get_config().presets_path
    if path:
        return os.path.abspath(os.path.expanduser(path))
    from platformdirs import user_config_dir

    return os.path.join(user_config_dir("lmnb", appauthor=False), "presets.json")


def _read_file(path: str) -> tuple[dict[str, Any], Optional[str]]:
    """The raw ``{name: values}`` stored in ``path``, and what is wrong with the file (or ``None``)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError) as e:
        return {}, f"Could not read the presets file {path}: {e}. Built-in presets still work."
    try:
        data = json.loads(text) if text.strip() else {"presets": {}}
    except json.JSONDecodeError as e:
        return {}, (
            f"The presets file {path} is not valid JSON ({e}): fix or delete it. Built-in presets still work."
        )
    if not isinstance(data, dict) or not isinstance(data.get("presets"), dict):
        return {}, (
            f'The presets file {path} is not an lmnb presets file (expected {{"presets": {{...}}}}): '
            "fix or delete it. Built-in presets still work."
        )
    return data["presets"], None


def _write_file(path: str, stored: dict[str, Any]) -> None:
    """Replace ``path`` atomically: a reader (or a crash) sees the old file or the new one, never half."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".presets-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": _FILE_VERSION, "presets": stored}, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_user() -> tuple[dict[str, dict[str, Any]], Optional[str]]:
    """The valid user presets, and a message about the file or the entries that were skipped (or ``None``).

    Never raises: an unreadable or corrupt file gives ``({}, message)``.
    """
    path = user_presets_path()
    stored, problem = _read_file(path)
    out: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for name, values in stored.items():
        try:
            name = check_name(name)
            out[name] = check_values(values)
        except ValueError as e:
            skipped.append(f"{name!r} ({e})")
    if skipped and problem is None:
        problem = f"Skipped invalid presets in {path}: {'; '.join(skipped)}."
    return out, problem


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------
def is_builtin(name: str) -> bool:
    """Whether ``name`` is (case-insensitively) one of the built-in presets."""
    return isinstance(name, str) and name.strip().casefold() in {b.casefold() for b in BUILTIN}


def check_name(name: Any) -> str:
    """``name`` stripped, or a ``ValueError`` saying why it cannot name a preset."""
    if not isinstance(name, str):
        raise ValueError(f"a preset name must be a string, not {type(name).__name__}")
    name = name.strip()
    if not name:
        raise ValueError("a preset needs a name")
    if len(name) > _MAX_NAME:
        raise ValueError(f"a preset name has at most {_MAX_NAME} characters ({len(name)} given)")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ValueError(f"a preset name cannot contain control characters: {name!r}")
    return name


def check_values(values: Any) -> dict[str, Any]:
    """The sampling values of a preset, checked and normalised (ints stay ints, floats become floats)."""
    if not isinstance(values, dict):
        raise ValueError(f"a preset is a dict of sampling settings, not {type(values).__name__}")
    if not values:
        raise ValueError("a preset needs at least one sampling setting")
    if "seed" in values:
        raise ValueError("seed is not part of a preset: a preset says how to sample, a seed pins one reply")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown preset setting(s) {', '.join(map(repr, unknown))}; settings: {', '.join(FIELDS)}")
    out: dict[str, Any] = {}
    for name in FIELDS:
        if name not in values:
            continue
        v = values[name]
        if name == "stop":
            v = [v] if isinstance(v, str) else v
            if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
                raise ValueError(f"stop={v!r}: expected a string or a list of strings")
            out[name] = list(v)
            continue
        if name == "logit_bias":  # stored with string keys, as JSON has them
            from .params import check_logit_bias

            out[name] = {str(k): b for k, b in check_logit_bias(v).items()}
            continue
        if name in _CHOICE_FIELDS:  # a named policy (context_overflow): checked below, as the engine does
            out[name] = v
            continue
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name}={v!r}: expected a number")
        if name in _INT_FIELDS:
            if v != int(v):
                raise ValueError(f"{name}={v!r}: expected a whole number")
            out[name] = int(v)
        else:
            out[name] = float(v)
    params = SamplingParams(**out).validate()  # the engine's own range checks and messages
    if "stop" in out:
        out["stop"] = list(params.stop or [])
    return out


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------
def presets() -> dict[str, dict[str, Any]]:
    """Every preset: the built-ins first, then the user's (in the order they were saved).

    A corrupt or unreadable presets file gives a ``PresetsFileWarning`` and only the built-ins.
    """
    out = {name: dict(values) for name, values in BUILTIN.items()}
    user, problem = load_user()
    if problem:
        warnings.warn(problem, PresetsFileWarning, stacklevel=2)
    out.update((name, dict(values)) for name, values in user.items())
    return out


def current_values() -> dict[str, Any]:
    """The session's sampling settings, as a preset would store them."""
    from .config import get_config

    cfg = get_config()
    values = {name: getattr(cfg, name) for name in FIELDS}
    values["stop"] = list(cfg.stop)
    values["logit_bias"] = {str(k): b for k, b in cfg.logit_bias.items()}
    return values


def save(name: str, values: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Save (or replace) the user preset ``name``; returns the values stored.

    Args:
        name: 1 to 64 characters, not the name of a built-in preset.
        values: sampling settings (a subset of ``FIELDS``); default: the session's current ones.
    """
    name = check_name(name)
    if is_builtin(name):
        raise ValueError(f"{name!r} is a built-in preset and cannot be overwritten: save under another name")
    clean = check_values(current_values() if values is None else values)
    path = user_presets_path()
    with _lock:
        stored, problem = _read_file(path)
        if problem:
            raise ValueError(f"{problem} (nothing was saved, so the file is left as it is)")
        # Keep entries this version cannot read (hand edits, a newer lmnb): only ``name`` changes.
        stored = dict(stored)
        stored[name] = clean
        _write_file(path, stored)
    return dict(clean)


def _find(name: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(name, str):
        raise ValueError(f"a preset name must be a string, not {type(name).__name__}")
    key = name.strip()
    for builtin, values in BUILTIN.items():
        if builtin.casefold() == key.casefold():
            return builtin, dict(values)  # built-ins work whatever state the file is in
    user, problem = load_user()
    if key in user:
        return key, user[key]
    folded = [n for n in user if n.casefold() == key.casefold()]
    if len(folded) == 1:
        return folded[0], user[folded[0]]
    known = ", ".join(repr(n) for n in [*BUILTIN, *user])
    extra = f" ({problem})" if problem else ""
    raise ValueError(f"unknown preset {name!r}; presets: {known}{extra}")


def apply(name: str) -> dict[str, Any]:
    """Make preset ``name`` the session's sampling defaults (``lmnb.configure``); returns its values."""
    from .config import configure, get_config

    _, values = _find(name)
    # Observers (widgets) hear about the change once every value is set, never half a preset.
    with get_config().hold_trait_notifications():
        configure(**values)
    return dict(values)


def delete(name: str) -> None:
    """Delete the user preset ``name`` (built-in presets cannot be deleted)."""
    if is_builtin(name):
        raise ValueError(f"{name.strip()!r} is a built-in preset and cannot be deleted")
    key = check_name(name)
    path = user_presets_path()
    with _lock:
        stored, problem = _read_file(path)
        if problem:
            raise ValueError(f"{problem} (nothing was deleted)")
        if key not in stored:
            known = ", ".join(repr(n) for n in stored) or "none"
            raise ValueError(f"unknown preset {key!r}; user presets: {known}")
        stored = {n: v for n, v in stored.items() if n != key}
        _write_file(path, stored)


def fits(preset: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether every setting of ``preset`` has its value in ``values`` (floats compared with a tolerance)."""
    return all(_same(values.get(k), v) for k, v in preset.items())


def matching(values: Optional[dict[str, Any]] = None) -> Optional[str]:
    """The name of the first preset ``values`` (default: the session's settings) fit, or ``None``."""
    values = current_values() if values is None else values
    user, _ = load_user()
    return next((name for name, p in {**BUILTIN, **user}.items() if fits(p, values)), None)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b
