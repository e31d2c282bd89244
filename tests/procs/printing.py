"""Programs the print/monitor tests start as real processes.

`python tests/procs/printing.py record FILE ARG...` appends its ARGs, as one JSON list
on one line, to FILE: the command `logkit monitor --call` runs, so the test
can check every argument it was given, byte for byte.
"""
from __future__ import annotations

import json
import os
import sys

HERE = os.path.abspath(__file__)


def record(path: str, args: list[str]) -> None:
    line = json.dumps(args, ensure_ascii=False) + "\n"
    # One write of the whole line with O_APPEND: lines of concurrent calls never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "record":
        record(argv[1], argv[2:])
        return 0
    print(f"usage: {os.path.basename(HERE)} record FILE ARG...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
