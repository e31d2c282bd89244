"""A SQLite storage backend for logkit: one table of messages in one file.

Third-party code: it uses only the documented interface (logkit.registry)
and public logkit names, as docs/backends.md tells a backend author to.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time as _time
from collections import namedtuple

from logkit import Limits, NoSuchMessage
from logkit.errors import InvalidArgument
from logkit.registry import Option, Reader, StorageBackend

Row = namedtuple("Row", "sequence time severity process_id thread_id text data_class data")
_COLS = "seq, time, severity, pid, tid, text, data_class, data"


class SqliteReader(Reader):
    def __init__(self, path):
        self.path = path
        self._from = None

    def _query(self, where="", args=(), order="ASC"):
        con = sqlite3.connect(self.path)
        try:
            rows = con.execute(f"SELECT {_COLS} FROM messages {where} ORDER BY seq {order}", args).fetchall()
        finally:
            con.close()
        return [Row(*r) for r in rows]

    def __iter__(self):
        if self._from is None:
            return iter(self._query())
        return iter(self._query("WHERE seq >= ?", (self._from,)))

    def reverse(self):
        return iter(self._query(order="DESC"))

    def seek(self, sequence=None, time=None):
        if (sequence is None) == (time is None):
            raise InvalidArgument("seek() takes exactly one of sequence= or time=")
        rows = self._query("WHERE seq >= ?", (sequence,)) if sequence is not None else \
            self._query("WHERE time >= ?", (time,))
        if not rows:
            raise NoSuchMessage(f"{self.path}: no message at or after {sequence if sequence is not None else time}")
        self._from = rows[0].sequence
        return rows[0]

    def rewind(self):
        self._from = None

    def limits(self):
        rows = self._query()
        if not rows:
            return None
        return Limits(rows[0].sequence, rows[0].time, rows[-1].sequence, rows[-1].time)


class SqliteStorage(StorageBackend):
    """Messages in a SQLite database file."""
    options = (
        Option("path", "path", required=True, help="the database file"),
    )

    def __init__(self, log, **options):
        super().__init__(log, **options)
        self.path = self.config["path"]
        self._local = threading.local()
        self.written = 0
        con = self._con()
        con.execute("CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER, "
                    "severity INTEGER, pid INTEGER, tid INTEGER, text TEXT, data_class TEXT, data BLOB)")
        con.commit()

    def _con(self):
        con = getattr(self._local, "con", None)
        if con is None or self._local.pid != os.getpid():
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._local.con, self._local.pid = con, os.getpid()
        return con

    def _insert(self, text, severity, data, data_class, time, pid, tid):
        if isinstance(severity, bool) or not isinstance(severity, int) or not -250 <= severity <= 250:
            raise InvalidArgument(f"severity {severity!r} is outside -250..250")
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = bytes(text).decode("utf-8", "replace")
        cur = self._con().execute(
            "INSERT INTO messages (time, severity, pid, tid, text, data_class, data) VALUES (?,?,?,?,?,?,?)",
            (time if time is not None else _time.time_ns(), severity, pid, tid, text, data_class or "",
             bytes(data or b"")))
        self.written += 1
        return cur.lastrowid

    def write(self, text, severity=20, data=b"", data_class="", time=None):
        return self._insert(text, severity, data, data_class, time, os.getpid(), threading.get_native_id())

    def append(self, message):
        return self._insert(message.text, message.severity, message.data, message.data_class,
                            message.time, message.process_id, message.thread_id)

    def reader(self):
        return SqliteReader(self.path)

    def stats(self):
        return {"written": self.written}

    def describe(self):
        return f"sqlite database {self.path}"
