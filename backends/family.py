"""The `family` storage backend: a segment family in one directory (logkit.family).

The default storage.  Writers map the live segment and write into it
directly; when it fills, one writer rotates it into history.
"""
from __future__ import annotations

import os

from logkit.family import FamilyWriter, open_reader
from logkit.registry import (
    Option, StorageBackend, directory_problem, family_name_problem, key_file_problem, segment_size_problem,
)

SYNC_CHOICES = ("never", "close", "always")


class FamilyStorage(StorageBackend):
    options = (
        Option("directory", "dir", required=True, help="the family's directory"),
        Option("family", "str", None, help="family name (default: the log's name)"),
        Option("segment_size", "size", "8MiB", help="size of each segment file"),
        Option("create_directory", "bool", False, help="create `directory` if it does not exist"),
        Option("mode", "mode", 0o640, help="permissions of new segment files"),
        Option("retain_age", "duration", None, help="delete history older than this"),
        Option("retain_count", "int", None, help="keep at most this many history segments"),
        Option("retain_size", "size", None, help="keep at most this many bytes of history"),
        Option("wait_timeout", "duration", 30.0, help="how long a writer waits for a rotation"),
        Option("rotation_timeout", "duration", 5.0, help="when a stalled rotation is taken over"),
        Option("prepare_at", "float", 0.5,
               help="fill (0 to 1) of the live segment at which the next one is prepared ahead"),
        Option("sync", "choice", "close", choices=SYNC_CHOICES,
               help="msync: never, on close/flush, or after every message"),
        Option("key_file", "path", None,
               help="seal (encrypt and authenticate) every message with this key file's current key"),
    )

    @classmethod
    def check_options(cls, log, options, writing=True):
        """The family name, segment size, key file and (writing) directory
        FamilyWriter would refuse, named by option."""
        o = options
        checks = [
            ("family", family_name_problem(o.get("family") or log)),
            ("segment_size", segment_size_problem(o.get("segment_size") or 0)),
            ("key_file", key_file_problem(o["key_file"]) if o.get("key_file") is not None else None),
        ]
        if writing and o.get("directory") is not None:
            checks.append(("directory", directory_problem(os.fspath(o["directory"]),
                                                          create=bool(o.get("create_directory")))))
        return [(key, problem) for key, problem in checks if problem]

    def __init__(self, log: str, **options):
        super().__init__(log, **options)
        o = self.config
        self.directory = os.fspath(o["directory"])
        self.family = o.get("family") or log
        self.sync = o.get("sync", "close")
        self.writer = FamilyWriter(
            self.directory, self.family, o.get("segment_size", "8MiB"),
            wait_timeout=o.get("wait_timeout", 30.0), rotation_timeout=o.get("rotation_timeout", 5.0),
            mode=o.get("mode", 0o640), retain_age=o.get("retain_age"),
            retain_count=o.get("retain_count"), retain_size=o.get("retain_size"),
            create=bool(o.get("create_directory", False)) or os.path.isdir(self.directory),
            key_file=o.get("key_file"), prepare_at=o.get("prepare_at", 0.5))
        self.key_file = o.get("key_file")

    def write(self, text, severity=20, data=b"", data_class="", time=None):
        seq = self.writer.write(text, severity, data, data_class, time)
        if self.sync == "always":
            self.writer.sync()
        return seq

    def fast_sink(self):
        # Straight into the live segment from C, unless every message must be synced.
        if self.sync == "always":
            return None
        from logkit import _handler
        return _handler.FamilySink(self.writer)

    def append(self, message):
        seq = self.writer.append(message)
        if self.sync == "always":
            self.writer.sync()
        return seq

    def flush(self):
        if self.sync != "never":
            self.writer.sync()

    def close(self):
        if not self.writer.closed:
            self.flush()
        self.writer.close()

    def reader(self):
        return open_reader(self.directory, self.family, key_file=self.key_file)

    def stats(self):
        st = dict(self.writer.segment.stats())
        out = {k: int(v) for k, v in st.items() if isinstance(v, (int, bool))}
        out["rotations"] = self.writer.rotations
        out["takeovers"] = self.writer.takeovers
        return out

    def describe(self):
        sealed = f", sealed with {self.key_file}" if self.key_file else ""
        return f"family '{self.family}' in {self.directory} ({self.writer.segment_size} bytes a segment{sealed})"
