"""Child processes for tests/test_core_hostile.py: a writer that stops or dies
at a named step of the C writer (logkit.inject.write_stepwise).

Run as ``python tests/procs/core.py JSON``, where JSON holds the segment
(``path``, or ``path`` + ``offset`` + ``length`` for a region of a file, as a
partition half is), an optional ``key`` ([id, hex]) and the keyword arguments
of write_stepwise (``stop_at``, ``action``, ``notify``, ``process_id``...).
Exit status: 0 written (prints the sequence), 3 MessageLost, 4 another
LogkitError (its message on stderr).
"""
from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXIT_LOST = 3
EXIT_ERROR = 4


def start_stepwise_writer(spec: dict) -> subprocess.Popen:
    """Start a child that writes one message with inject.write_stepwise(seg, spec...)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), json.dumps(spec)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _main(spec: dict) -> int:
    from logkit import Segment, inject
    from logkit.errors import LogkitError, MessageLost
    key = spec.pop("key", None)
    key = (key[0], bytes.fromhex(key[1])) if key else None
    path = spec.pop("path")
    text = spec.pop("text", "stepwise")
    offset = spec.pop("offset", None)
    length = spec.pop("length", None)
    if offset is None:
        seg = Segment.open(path, key=key)
    else:
        f = open(path, "r+b")
        mm = mmap.mmap(f.fileno(), 0)
        seg = Segment.from_buffer(mm, offset, length, key=key)
    try:
        seq = inject.write_stepwise(seg, text, **spec)
    except MessageLost as e:
        print(e, file=sys.stderr)
        return EXIT_LOST
    except LogkitError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(seq)
    return 0


if __name__ == "__main__":
    sys.exit(_main(json.loads(sys.argv[1])))
