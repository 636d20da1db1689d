"""Read the key/value metadata at the head of a GGUF file, from disk or over HTTP ranges.

Why not ``gguf.GGUFReader``: it memory-maps the whole file and builds every tensor view (about
2 s even for a 135M model) and fails on a partial file. Listing a library or estimating whether a
remote file fits needs only the first few kilobytes, so this reader streams the header, skips
the big tokenizer arrays without materialising them, and can stop as soon as it has the keys it
needs. Value type ids come from the ``gguf`` package (llama.cpp's own Python package).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Optional

GGUF_MAGIC = b"GGUF"
_MAX_ARRAY_KEPT = 64  # arrays longer than this are summarised (token lists have 100k+ entries)
_MAX_STRING = 64 << 20  # a chat template can be long; anything larger is a corrupt header


class NotGGUF(ValueError):
    """The bytes do not start a GGUF file, or the header is damaged."""


@dataclass(frozen=True)
class ArrayInfo:
    """Stands for a long array that was skipped: its element type name and length."""

    type: str
    length: int


def _scalar_formats() -> dict[int, str]:
    from gguf import GGUFValueType as T

    return {
        T.UINT8: "<B", T.INT8: "<b", T.UINT16: "<H", T.INT16: "<h", T.UINT32: "<I", T.INT32: "<i",
        T.FLOAT32: "<f", T.BOOL: "<?", T.UINT64: "<Q", T.INT64: "<q", T.FLOAT64: "<d",
    }  # fmt: skip


class _Stream:
    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read

    def take(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise EOFError
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > _MAX_STRING:
            raise NotGGUF(f"implausible string length {n} in the GGUF header")
        return self.take(n).decode("utf-8", errors="replace")


def read_metadata(
    source: BinaryIO | Callable[[int], bytes], *, want: Optional[Iterable[str]] = None
) -> dict[str, Any]:
    """Parse a GGUF header into ``{key: value}``.

    Args:
        source: a binary file object (read from its current position) or a ``read(n)`` callable.
        want: stop once every one of these keys has been read (``None`` reads every key).

    Long arrays come back as ``ArrayInfo``. ``GGUF.version``, ``GGUF.tensor_count`` and
    ``GGUF.kv_count`` are included. Raises ``NotGGUF`` for other files, ``EOFError`` when the
    source ends inside the header (a caller reading over HTTP fetches more and retries).
    """
    from gguf import GGUFValueType as T

    s = _Stream(source.read if hasattr(source, "read") else source)  # type: ignore[union-attr]
    if s.take(4) != GGUF_MAGIC:
        raise NotGGUF("not a GGUF file (the first four bytes are not 'GGUF')")
    version = s.unpack("<I")
    if version not in (2, 3):
        raise NotGGUF(f"unsupported GGUF version {version}")
    n_tensors, n_kv = s.unpack("<Q"), s.unpack("<Q")
    if n_kv > 1_000_000 or n_tensors > 10_000_000:
        raise NotGGUF("damaged GGUF header (implausible counts)")
    fmts = _scalar_formats()
    out: dict[str, Any] = {"GGUF.version": version, "GGUF.tensor_count": n_tensors, "GGUF.kv_count": n_kv}
    missing = set(want) if want is not None else None

    def value(vtype: int) -> Any:
        if vtype == T.STRING:
            return s.string()
        if vtype in fmts:
            return s.unpack(fmts[vtype])
        raise NotGGUF(f"unknown GGUF value type {vtype}")

    for _ in range(n_kv):
        key = s.string()
        vtype = s.unpack("<I")
        if vtype == T.ARRAY:
            etype, length = s.unpack("<I"), s.unpack("<Q")
            if length <= _MAX_ARRAY_KEPT:
                val: Any = [value(etype) for _ in range(length)]
            else:
                if etype == T.STRING:
                    for _ in range(length):
                        s.take(s.unpack("<Q"))
                elif etype in fmts:
                    s.take(struct.calcsize(fmts[etype]) * length)
                else:
                    raise NotGGUF(f"unsupported GGUF array element type {etype}")
                val = ArrayInfo(T(etype).name.lower(), length)
        else:
            val = value(vtype)
        out[key] = val
        if missing is not None:
            missing.discard(key)
            if not missing:
                break
    return out


def read_file_metadata(path: str, *, want: Optional[Iterable[str]] = None) -> dict[str, Any]:
    """``read_metadata`` on a local file; a truncated header raises ``NotGGUF``."""
    with open(path, "rb") as f:
        try:
            return read_metadata(f, want=want)
        except EOFError:
            raise NotGGUF(f"{path} ends inside its GGUF header (truncated)") from None


def is_gguf(path: str) -> bool:
    """Whether the file starts with the GGUF magic (cheap: reads four bytes)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def file_type_name(meta: dict[str, Any]) -> Optional[str]:
    """The quantization named by ``general.file_type`` (``Q4_K_M``, ``F16``...), if present."""
    try:
        from gguf import LlamaFileType

        return LlamaFileType(int(meta["general.file_type"])).name.removeprefix("MOSTLY_")
    except (KeyError, ValueError, TypeError):
        return None
