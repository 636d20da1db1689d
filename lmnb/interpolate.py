"""``{name}`` in a cell is replaced by the user's variable; everything else is left alone.

Unlike ``str.format`` (jupyter-ai's approach, which breaks on any dict literal or JSON in a
prompt), only braces around a known name (or a dotted attribute of one) are replaced. ``{{`` and
``}}`` give literal braces. Unknown names, dict literals, JSON and code are kept as typed.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

_PATTERN = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\}")
_MISSING = object()


def _lookup(path: str, namespace: Mapping[str, Any]) -> Any:
    head, *rest = path.split(".")
    if head not in namespace:
        return _MISSING
    value = namespace[head]
    for attr in rest:
        try:
            value = getattr(value, attr)
        except Exception:
            return _MISSING
    return value


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{name}`` with ``str(namespace[name])``; ``{{``/``}}`` become ``{``/``}``."""

    def sub(m: re.Match) -> str:
        token = m.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        value = _lookup(m.group(1), namespace)
        return token if value is _MISSING else str(value)

    return _PATTERN.sub(sub, text)


def names(text: str) -> list[str]:
    """The variable names ``{name}`` / ``{name.attr}`` placeholders in ``text`` refer to (heads only)."""
    return [m.group(1).split(".")[0] for m in _PATTERN.finditer(text) if m.group(1)]
