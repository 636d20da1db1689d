"""Plain tables that print well in a terminal and render as HTML in a notebook.

Every cell is escaped: repository ids, file names and descriptions come from the network.
"""

from __future__ import annotations

from typing import Any, Sequence

from .markup import html, join


def human_bytes(n: float) -> str:
    """A size for people: ``98.4 MB``, ``4.9 GB``, ``512 B``. lmnb's one way to print bytes.

    Decimal units (1 MB = 1000**2 bytes), the way the Hugging Face Hub, LM Studio and file managers
    on macOS and in GNOME show file sizes, so a model's size here matches the one on its Hub page.
    (llama.cpp's own log lines say MiB; those are llama.cpp's, printed as they come.)
    """
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_count(n: float) -> str:
    for unit in ("", "k", "M", "B", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" or n >= 100 else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.0f}P"


class Table:
    """Rows under a header, with an optional footer line; ``str()`` for text, ``_repr_html_`` for notebooks."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], footer: str = "", empty: str = "") -> None:
        self.columns = list(columns)
        self.rows = [["" if c is None else str(c) for c in r] for r in rows]
        self.footer = footer
        self.empty = empty

    def __str__(self) -> str:
        if not self.rows:
            return self.empty or "(nothing)"
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in self.rows]
        if self.footer:
            lines.append(self.footer)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.rows:
            return str(html("<p>{}</p>", self.empty or "(nothing)"))
        head = join(html("<th style='text-align:left'>{}</th>", c) for c in self.columns)
        body = join(
            html("<tr>{}</tr>", join(html("<td style='text-align:left'>{}</td>", c) for c in r))
            for r in self.rows
        )
        foot = html("<p><small>{}</small></p>", self.footer) if self.footer else ""
        return str(html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>{}", head, body, foot))


class TableList(list):
    """A list that shows as its ``table()``: text in terminals and IPython, HTML in notebooks."""

    def table(self) -> Table:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __str__(self) -> str:
        return str(self.table())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()
