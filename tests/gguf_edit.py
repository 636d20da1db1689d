"""Copies of a real GGUF file with one string of its metadata changed (e.g. a hostile general.name).

The tensor data is copied byte for byte: only the key/value section is rewritten and the padding
before the data section recomputed (tensor offsets are relative to that section).
"""

from __future__ import annotations

import struct
from pathlib import Path

_STRING = 8  # GGUFValueType.STRING


def with_string(src: str | Path, dst: str | Path, key: str, value: str) -> Path:
    """Write ``dst``: ``src`` with the string metadata ``key`` set to ``value`` (added when missing)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(src))
    raw = Path(src).read_bytes()
    kb, vb = key.encode(), value.encode()
    field_bytes = struct.pack("<Q", len(kb)) + kb + struct.pack("<I", _STRING) + struct.pack("<Q", len(vb)) + vb
    last = reader.tensors[-1].field
    infos_end = last.offset + sum(int(p.nbytes) for p in last.parts)
    align = int(reader.fields["general.alignment"].parts[-1][0]) if "general.alignment" in reader.fields else 32
    old = reader.fields.get(key)
    if old is not None:
        start, end = old.offset, old.offset + sum(int(p.nbytes) for p in old.parts)
        head = raw[:start] + field_bytes + raw[end:infos_end]
    else:  # append after the last key/value pair and count it in the header
        first_info = reader.tensors[0].field.offset
        n_kv = struct.unpack_from("<Q", raw, 16)[0]
        head = raw[:16] + struct.pack("<Q", n_kv + 1) + raw[24:first_info] + field_bytes + raw[first_info:infos_end]
    head += b"\0" * (-len(head) % align)
    out = Path(dst)
    with open(out, "wb") as f:
        f.write(head)
        f.write(raw[reader.data_offset:])
    return out
