"""The record parts of a message read back (logger, fields, traceback), for
the message classes that are not logkit.Message (a plain file's, a
partition's copies).  logkit.Message has the same properties from the core
(logkit._segment.record_info); this mixin gives them to any class with
``data_class`` and ``data``.
"""
from __future__ import annotations

from typing import Any

from logkit._segment import RecordInfo, record_info

__all__ = ["RecordParts"]


class RecordParts:
    """Mixin: ``record``, ``logger``, ``fields`` and ``traceback`` of a
    message with ``data_class`` and ``data`` (docs/format.md, "The record
    payload").  Never raises on the data's bytes."""

    __slots__ = ()

    @property
    def record(self) -> RecordInfo:
        return record_info(self.data_class, self.data)

    @property
    def logger(self) -> str:
        """The name of the logger that wrote it ("" when none was stored)."""
        return self.record.logger

    @property
    def fields(self) -> dict[str, Any]:
        """Its fields: a dict whose values keep their JSON types ({} when none)."""
        return self.record.fields

    @property
    def traceback(self) -> str | None:
        """The traceback (or stack) text stored with it, else None."""
        return self.record.traceback
