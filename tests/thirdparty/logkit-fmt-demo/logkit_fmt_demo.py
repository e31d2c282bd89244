"""A logkit formatter for the data class "demo-point": 8 bytes, two
little-endian int32 (x, y).  Registered in pyproject.toml under the
entry-point group logkit.formatters (see logkit/formatters.py)."""
from __future__ import annotations

import struct

_POINT = struct.Struct("<ii")


def format_point(data: bytes, message) -> str:
    """A point on the plane: two little-endian int32 (x, y)."""
    x, y = _POINT.unpack(data)          # struct.error for another length: logkit shows hex
    return f"point(x={x}, y={y})"
