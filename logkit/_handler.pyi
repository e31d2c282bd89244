# Type stubs for logkit._handler (pyx/logkit/_handler.pyx): the write path of
# logkit.Handler.  Users meet it only through logkit.Handler.
import logging
from typing import Any, Callable

from logkit.family import FamilyWriter

class FamilySink:
    """FamilySink(writer): writes records into a FamilyWriter's live segment
    from C; rotates through the writer."""
    writer: FamilyWriter
    def write(self, text: str, severity: int, data: bytes, data_class: str, time: int) -> int | None:
        """One message; returns its sequence number."""

class Emitter:
    """Emitter(handler, sink, write, emit_only=False): a handler's handle() (or
    emit(), with emit_only) as one object: filter, map the record, write
    without a lock; failures go to handler.handleError."""
    handler: logging.Handler
    filters: list
    formatter: logging.Formatter | None
    sink: FamilySink | None
    write: Callable[..., Any]
    emit_only: bool
    def __call__(self, record: logging.LogRecord) -> Any: ...
    def handle(self, record: logging.LogRecord) -> Any:
        """Filter (unless emit_only), then write the record; the Handler's
        `handle` and `emit` attributes are this method, bound."""
