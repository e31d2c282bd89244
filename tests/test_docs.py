"""The documentation is executable and agrees with the code.

Every ```python block in README.md and the docs (DOC_FILES) runs as a program in a fresh interpreter and an empty temporary working
directory.  A block preceded by `<!-- file: NAME -->` is not run directly: it
is written to NAME in the working directory of every later example of the same
document (that is how the C-level API example gets its fastlog.pyx and
setup.py).  docs/format.md is also checked against pyx/include/lk_segment.h
(header offsets, the message layout, the worked hex dump) and its reference
reader against Segment.records() on randomly damaged segments; docs/api.md's
signature headings, scan() keys, errors table, C-level API table and
`from logkit... import` lines against the code and pyx/logkit/_segment.pxd;
docs/performance.md against bench/bench_segment.py; every link between the
documents against their headings; and the .pyi stubs against the compiled
modules.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import inspect
import io
import os
import random
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import logkit
try:
    import logkit._bench    # built only with LOGKIT_BUILD_BENCH=1, as `make build` does; never installed
except ModuleNotFoundError:
    pass
import logkit._scan
import logkit._handler
import logkit._segment
import logkit.errors

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC_FILES = [DOCS / "api.md", DOCS / "format.md", DOCS / "performance.md", DOCS / "getting-started.md",
             DOCS / "config.md", DOCS / "backends.md", DOCS / "cli.md", DOCS / "backend-partition.md",
             DOCS / "backend-pipe.md", DOCS / "backend-plainfile.md", DOCS / "server.md",
             DOCS / "formatters.md", DOCS / "from-other-loggers.md", ROOT / "README.md"]
HEADER_H = ROOT / "pyx" / "include" / "lk_segment.h"

_FENCE_OPEN = re.compile(r"^```([A-Za-z0-9_+-]*)\s*$")
_FILE_MARK = re.compile(r"^<!--\s*file:\s*(\S+)\s*-->\s*$")


@dataclass
class Block:
    doc: Path
    line: int           # 1-based line of the opening fence
    lang: str
    code: str
    file_name: str | None

    @property
    def id(self) -> str:
        return f"{self.doc.name}:{self.line}"


def _blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    pending_file = None
    i = 0
    while i < len(lines):
        mark = _FILE_MARK.match(lines[i])
        if mark:
            pending_file = mark.group(1)
            i += 1
            continue
        fence = _FENCE_OPEN.match(lines[i])
        if fence:
            start = i
            body = []
            i += 1
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"{doc.name}:{start + 1}: code block is never closed"
            out.append(Block(doc, start + 1, fence.group(1), "\n".join(body) + "\n", pending_file))
            pending_file = None
        elif lines[i].strip():
            pending_file = None
        i += 1
    return out


ALL_BLOCKS = [b for doc in DOC_FILES for b in _blocks(doc)]
RUNNABLE = [b for b in ALL_BLOCKS if b.lang == "python" and b.file_name is None]


def _needs_compiler(block: Block) -> bool:
    return "build_ext" in block.code


def test_docs_have_runnable_examples():
    for doc in DOC_FILES:
        assert any(b.doc == doc for b in RUNNABLE), f"{doc.name} has no ```python example"
    # The C-level example's files are declared where the runnable block expects them.
    files = {b.file_name for b in ALL_BLOCKS if b.file_name}
    assert {"fastlog.pyx", "setup.py"} <= files


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_doc_example_runs(block: Block, tmp_path: Path):
    if _needs_compiler(block):
        pytest.importorskip("Cython")
        if not (shutil.which("cc") or shutil.which("gcc")):
            pytest.skip("no C compiler to build the Cython example")
    for earlier in ALL_BLOCKS:
        if earlier.doc == block.doc and earlier.file_name and earlier.line < block.line:
            (tmp_path / earlier.file_name).write_text(earlier.code, encoding="utf-8")
    script = tmp_path / "doc_example.py"
    script.write_text(block.code, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"example at {block.id} failed with exit status {proc.returncode}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")


# ---------------------------------------------------------------- format.md vs the C header

def _header_defines() -> dict[str, int]:
    text = HEADER_H.read_text(encoding="utf-8")
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^#define\s+(LK_\w+)\s+(\d+)u?\b", text, re.M)}


def test_format_md_lists_every_header_offset_with_its_value():
    doc = (DOCS / "format.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("|")]
    offsets = {k: v for k, v in _header_defines().items()
               if k.startswith("LK_H_") and not k.endswith("_MAX")}
    assert len(offsets) > 30
    for name, value in offsets.items():
        assert any(f"`{name}`" in row and re.match(rf"^\|\s*{value}\s*\|", row) for row in rows), \
            f"docs/format.md has no header-map row '| {value} | ... `{name}` ...' (lk_segment.h)"


def test_format_md_header_map_covers_every_byte_once():
    doc = (DOCS / "format.md").read_text(encoding="utf-8")
    section = doc.split("### Complete map", 1)[1].split("\n### ", 1)[0]
    spans = []
    for row in section.splitlines():
        m = re.match(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|", row)
        if m:
            spans.append((int(m.group(1)), int(m.group(2))))
    pos = 0
    for start, size in spans:
        assert start == pos, f"header map: row at {start}, expected one at {pos}"
        pos = start + size
    assert pos == 4096


def test_format_md_states_the_constants_of_the_header():
    d = _header_defines()
    doc = (DOCS / "format.md").read_text(encoding="utf-8")
    assert d["LK_FORMAT_VERSION"] == 3 and d["LK_FORMAT_VERSION_1"] == 1 and d["LK_HEADER_SIZE"] == 4096
    assert d["LK_MSG_HEADER"] == 64 and d["LK_MIN_REGION"] == 8192
    assert d["LK_LISTENER_SLOTS"] == 25 and d["LK_LISTENER_SLOT_BYTES"] == 64
    assert d["LK_WRITTEN_SHARDS"] == 16 and d["LK_H_FAMILY_MAX"] == 64 and d["LK_H_PREVIOUS_MAX"] == 256
    assert "0x4B4CFEFF" in doc and "0xE3069283" in doc and "`0x0001`" in doc
    # NEXT counts 8-byte units in 32 bits and must hold the NEXT of a full region.
    assert logkit._segment.MAX_SEGMENT_SIZE == ((1 << 32) - 1) * 8
    assert f"{logkit._segment.MAX_SEGMENT_SIZE} bytes" in doc and "(2^32 − 1) × 8" in doc
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    assert f"| `MAX_SEGMENT_SIZE` | {logkit.MAX_SEGMENT_SIZE} " in api
    assert "−250..250" in doc and (logkit.SEVERITY_MIN, logkit.SEVERITY_MAX) == (-250, 250)


def _hexdump_bytes() -> bytes:
    doc = (DOCS / "format.md").read_text(encoding="utf-8")
    after = doc.split("<!-- example-message-hexdump -->", 1)[1]
    dump = after.split("```text\n", 1)[1].split("```", 1)[0]
    out = bytearray()
    for line in dump.splitlines():
        hexpart = line.split("|", 1)[0].split(None, 1)[1]
        out += bytes.fromhex(hexpart)
    return bytes(out)


def test_format_md_worked_example_is_a_valid_message():
    m = _hexdump_bytes()
    doc = (DOCS / "format.md").read_text(encoding="utf-8")
    assert len(m) == 80
    sentinel, state, total, severity, flags, seq, time = struct.unpack_from("<IIIhHQq", m, 0)
    tl, dl, cl, key_id, span, stub, checksum = struct.unpack_from("<IIHHIII", m, 40)
    assert (sentinel, state, total, severity, flags) == (0x4B4CFEFF, 2, 80, 20, 0)
    assert (seq, time) == (1, 1_700_000_000_000_000_000)
    assert (tl, dl, cl, key_id, span) == (5, 3, 3, 0, 1)
    assert m[64:75] == b"hello" + b"raw" + b"\x01\x02\x03" and m[75:] == bytes(5)
    # Offset 56 is the stub checksum (bytes 8..11, 16..23, 32..55), offset 60 the full one.
    assert stub == logkit.crc32c(m[8:12] + m[16:24] + m[32:56])
    assert checksum == logkit.crc32c(m[8:60] + m[64:64 + tl + cl + dl])
    assert "0x%08X" % stub in doc and "0x%08X" % checksum in doc
    pid, tid = struct.unpack_from("<II", m, 32)
    assert f"| {pid} | process id |" in doc and f"| {tid} | thread id" in doc


def test_format_md_worked_example_is_what_logkit_writes_today():
    """The dump is regenerated when the format changes: the example program's
    message, written now, differs from it only in pid, tid and stub checksum."""
    m = _hexdump_bytes()
    region = bytearray(8192)
    seg = logkit.Segment.format(region, family="app")
    try:
        seg.write("hello", severity=20, data=b"\x01\x02\x03", data_class="raw",
                  time=1700000000000000000)
        word = seg.header()["reservation_word"]
    finally:
        seg.close()
    now = bytes(region[4096:4096 + 80])
    assert now[:32] == m[:32] and now[40:56] == m[40:56] and now[60:] == m[60:], (
        "docs/format.md: the worked example's bytes are not what logkit writes; regenerate the dump")
    assert "`0x%016X`" % word in (DOCS / "format.md").read_text(encoding="utf-8")


def _c_message_layout() -> dict[int, tuple[str, str]]:
    """offset -> (type, field name) from the message layout comment in lk_segment.h."""
    text = HEADER_H.read_text(encoding="utf-8")
    block = text.split("A message (64-byte header", 1)[1].split("Bytes 0..7 are read", 1)[0]
    out = {}
    for m in re.finditer(r"^ \*\s+(\d+)\s+([ui](?:8|16|32|64))\s+(.*)$", block, re.M):
        name = re.split(r"\s{2,}|[:(,]|\s(?=\d)", m.group(3), maxsplit=1)[0].strip()
        out[int(m.group(1))] = (m.group(2), name)
    return out


def test_format_md_message_layout_matches_the_header_comment():
    doc = (DOCS / "format.md").read_text(encoding="utf-8")
    section = doc.split("\n## Messages\n", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for m in re.finditer(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*([ui]\d+)\s*\|(.*)\|\s*$", section, re.M):
        rows[int(m.group(1))] = (int(m.group(2)), m.group(3), m.group(4).replace("**", "").lower())
    c = _c_message_layout()
    assert len(c) == 16 and sorted(c) == sorted(rows), (sorted(c), sorted(rows))
    pos = 0
    for off in sorted(rows):
        size, typ, field = rows[off]
        assert off == pos, f"docs/format.md message table: field at {off}, expected one at {pos}"
        assert size * 8 == int(typ[1:]), f"docs/format.md message table: {off}: {typ} is not {size} bytes"
        assert c[off][0] == typ, f"message field {off}: {typ} in docs/format.md, {c[off][0]} in lk_segment.h"
        assert c[off][1].lower() in field, (
            f"message field {off}: lk_segment.h calls it {c[off][1]!r}, docs/format.md says {field.strip()!r}")
        pos = off + size
    assert pos == 64


def _reference_reader() -> dict:
    """Run the reference reader of docs/format.md (its own demo included) and return its names."""
    doc = (DOCS / "format.md").read_text(encoding="utf-8")
    section = doc.split("### A complete reader", 1)[1].split("\n## ", 1)[0]
    block = next(b for b in _blocks(DOCS / "format.md")
                 if b.lang == "python" and b.code.strip() and b.code.strip() in section)
    namespace: dict = {"__name__": "format_md_reader"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block.code, f"docs/format.md:{block.line}", "exec"), namespace)
    return namespace


def _random_segment(rnd: random.Random, key=None) -> bytes:
    """A segment with every kind of record, a jumped COUNT now and then, and random damage
    (sealed, format version 2, when `key` is a (key_id, log_key) pair)."""
    buf = bytearray(16384)
    seg = logkit.Segment.format(buf, sequence_base=rnd.choice([1, 1000, 1 << 40]), key=key)
    held = []       # open reservations stay open while held (a dropped sealed one abandons itself)
    try:
        for _ in range(rnd.randint(1, 25)):
            k = rnd.random()
            try:
                if k < 0.6:
                    seg.write(rnd.randbytes(rnd.randint(0, 100)), data=b"\xff\xfeLK" * rnd.randint(0, 30),
                              data_class=rnd.choice(["", "c", "json"]))
                elif k < 0.75:
                    held.append(seg.reserve(rnd.randint(0, 150), rnd.randint(0, 50),
                                            data_class=rnd.choice(["", "xy"])))
                elif k < 0.85:
                    seg.reserve(rnd.randint(0, 150)).abandon()
                else:   # claims whose writers died before their stubs, COUNT perhaps jumping ahead
                    word, = struct.unpack_from("<Q", buf, 512)
                    n, skip = rnd.randint(1, 3), rnd.choice([0, 0, 5, 1000])
                    struct.pack_into("<Q", buf, 512, word + ((n + skip) << 32) + n * rnd.randint(8, 20))
            except logkit.LogkitError:
                break
        if rnd.random() < 0.3:
            seg.take_out_of_service()
            logkit.salvage(seg, grace=0, settle=0)      # fillers, abandoned stubs
        stubs = [r for r in seg.records() if r.kind in ("reserved", "abandoned")]
    finally:
        seg.close()
    for r in rnd.sample(stubs, min(len(stubs), rnd.choice([0, 0, 1, 2]))):
        # A consistent scribble: another span, filler flag or sequence, with a stub checksum to match.
        struct.pack_into("<H", buf, r.offset + 14, rnd.choice([0, 1]))
        struct.pack_into("<I", buf, r.offset + 52, rnd.randint(1, r.length // 64 + 2))
        struct.pack_into("<Q", buf, r.offset + 16, r.sequence + rnd.choice([-1, 0, 0, 1, 2, 5]))
        m = bytes(buf[r.offset:r.offset + 64])
        struct.pack_into("<I", buf, r.offset + 56, logkit.crc32c(m[8:12] + m[16:24] + m[32:56]))
    for _ in range(rnd.randint(0, 4)):
        at, k = rnd.randrange(4096, len(buf)), rnd.random()
        if k < 0.4:
            buf[at] ^= 1 << rnd.randrange(8)
        elif k < 0.7:
            buf[at - at % 8:at - at % 8 + 8] = bytes(8)
        else:
            chunk = rnd.randbytes(rnd.randint(1, 64))[:len(buf) - at]
            buf[at:at + len(chunk)] = chunk
    if rnd.random() < 0.1:
        struct.pack_into("<Q", buf, 512, rnd.getrandbits(64))
    return bytes(buf)


def test_format_md_reference_reader_agrees_with_logkit_on_damaged_segments():
    walk = _reference_reader()["walk"]
    rnd = random.Random(20261123)
    kinds = set()
    for _ in range(300):
        region = _random_segment(rnd)
        mine = list(walk(region))
        seg = logkit.Segment.from_buffer(region, readonly=True)
        try:
            theirs = [(r.kind, r.offset, r.length, r.sequence) for r in seg.records()]
        finally:
            seg.close()
        assert mine == theirs, f"docs/format.md's reader and Segment.records() disagree:\n{mine}\n{theirs}"
        kinds.update(k for k, *_ in mine)
    assert kinds == {"committed", "reserved", "abandoned", "gap", "damaged"}


def test_format_md_reference_reader_agrees_with_logkit_on_damaged_sealed_segments():
    """Version 2: the same reader, with the tag counted in total and the
    SEALED flag rule, agrees with Segment.records() on sealed segments."""
    walk = _reference_reader()["walk"]
    rnd = random.Random(20260406)
    kinds = set()
    for _ in range(200):
        region = _random_segment(rnd, key=(rnd.randint(1, 65535), rnd.randbytes(32)))
        assert struct.unpack_from("<II", region, 48)[1] == 1 and struct.unpack_from("<I", region, 8)[0] == 4
        mine = list(walk(region))
        seg = logkit.Segment.from_buffer(region, readonly=True)
        try:
            theirs = [(r.kind, r.offset, r.length, r.sequence) for r in seg.records()]
        finally:
            seg.close()
        assert mine == theirs, f"docs/format.md's reader and Segment.records() disagree:\n{mine}\n{theirs}"
        kinds.update(k for k, *_ in mine)
    assert kinds == {"committed", "reserved", "abandoned", "gap", "damaged"}


def test_format_md_version_2_section_matches_the_code():
    d = _header_defines()
    doc = (DOCS / "format.md").read_text(encoding="utf-8")
    section = _section(doc, "## Version 2: sealed segments")
    assert d["LK_FORMAT_VERSION_SEALED"] == logkit._segment.FORMAT_VERSION_SEALED == 4 and d["LK_FORMAT_VERSION_2"] == 2
    assert d["LK_SEG_FLAG_SEALED"] == 1 and d["LK_TAG_SIZE"] == 16 == logkit._segment.TAG_SIZE
    v2 = doc.split("## Version 2: sealed segments", 1)[1].split("\n## ", 1)[0]
    for off, name in ((8, "format version: `2`"), (52, "`SEALED`"), (464, "key check"), (480, "key id")):
        assert re.search(rf"^\|\s*{off}\s*\|.*{re.escape(name)}", v2, re.M), (off, name)
    assert d["LK_H_KEY_CHECK"] == 464 and d["LK_H_KEY_ID"] == 480
    assert "`0x0002`" in v2 and "align8(64 + tl + cl + dl + 16)" in v2
    import logkit._crypto as c
    assert c.FLAG_SEALED == 0x0002 and c.TAG_BYTES == 16
    assert c.SEGMENT_KEY_CONTEXT in v2.replace("\n", " ") and c.KEY_CHECK_CONTEXT in v2
    del section


def test_format_md_departure_references_exist():
    """The departures section is numbered 1..n and every 'departure N' link points into it."""
    doc = (DOCS / "format.md").read_text(encoding="utf-8")
    section = doc.split("## Where the current implementation departs from this document", 1)[1]
    numbers = [int(n) for n in re.findall(r"^(\d+)\. \*\*", section, re.M)]
    assert numbers == list(range(1, len(numbers) + 1)) and numbers
    for doc_file in DOC_FILES:
        for n in re.findall(r"departure (\d+)\b", doc_file.read_text(encoding="utf-8")):
            assert 1 <= int(n) <= len(numbers), f"{doc_file.name} refers to departure {n}, which does not exist"


# ---------------------------------------------------------------- links and performance.md

def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    out, seen = set(), {}
    in_code = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        m = re.match(r"^#{1,6} (.*)$", line)
        if m and not in_code:
            slug = _slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_docs_links_resolve():
    """Every [text](#anchor) and [text](other.md#anchor) between the docs names a real heading."""
    docs = sorted(DOCS.glob("*.md"))
    anchors = {d.name: _anchors(d) for d in docs}
    checked = 0
    for doc in docs:
        text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]*)\)", text):
            if re.match(r"[a-z]+:", target):
                continue                                    # an external URL
            name, _, anchor = target.partition("#")
            name = name or doc.name
            assert name in anchors, f"{doc.name} links to {target}: no docs/{name}"
            if anchor:
                assert anchor in anchors[name], f"{doc.name} links to {target}: no such heading in {name}"
            checked += 1
    assert checked >= 40


def _performance_rows() -> list[tuple[str, float, float, str]]:
    doc = (DOCS / "performance.md").read_text(encoding="utf-8")
    table = _section(doc, "## Figures")
    rows = []
    for m in re.finditer(r"^\| ([^|]+?) \| ([\d.]+) \| ([\d.]+) M \| ([^|]*)\|$", table, re.M):
        rows.append((m.group(1), float(m.group(2)), float(m.group(3)) * 1e6, m.group(4).strip()))
    return rows


def test_performance_md_matches_the_benchmark():
    doc = (DOCS / "performance.md").read_text(encoding="utf-8")
    bench = (ROOT / "bench" / "bench_segment.py").read_text(encoding="utf-8")
    assert "make bench" in doc and "bench/results/segment.json" in doc
    for var in re.findall(r'os\.environ\.get\("(LOGKIT_\w+)"', bench):
        assert f"`{var}`" in doc, f"docs/performance.md does not explain {var}"
    cases = re.findall(r'"case":\s*"([^"]+)"', bench)
    rows = _performance_rows()
    assert [r[0] for r in rows] == cases, "docs/performance.md: the figures table has other cases than bench_segment.py"
    for case, n, rate, _ in rows:
        assert abs(rate * n / 1e9 - 1) < 0.02, f"docs/performance.md: {case}: {n} ns is not {rate:.0f} per second"


def test_performance_md_ratios_agree_with_its_figures():
    rows = _performance_rows()
    ns = [n for _, n, _, _ in rows]
    ratios = [float(r[3].split("×", 1)[0]) if "×" in r[3] else None for r in rows]
    # Ratios as bench_segment.py computes them (rows in its order).
    # 4 is one process; 5, 6 and 8 are throughputs against it, so ns[4] / ns[i].
    expect = {0: ns[0] / ns[1], 3: ns[3] / ns[2], 5: ns[4] / ns[5], 6: ns[4] / ns[6],
              8: ns[4] / ns[8], 9: ns[9] / ns[0], 10: ns[10] / ns[0]}
    assert {i for i, r in enumerate(ratios) if r is not None} == set(expect)
    for i, value in expect.items():
        assert abs(ratios[i] - value) < 0.01 * value + 0.005, f"docs/performance.md: {rows[i][0]}: {ratios[i]} is not {value:.2f}"
    # The targets the benchmark names are stated next to the figures, and a
    # figure that misses its target says so.
    assert "target ≤ 2×" in rows[0][3] and "target ≥ 1.3×" in rows[5][3]
    for i, limit, below in ((0, 2.0, True), (5, 1.3, False)):
        met = ratios[i] <= limit if below else ratios[i] >= limit
        assert met or "not met" in rows[i][3], f"docs/performance.md: {rows[i][0]} misses its target silently"


# ---------------------------------------------------------------- api.md covers the API

def test_api_md_mentions_every_public_name():
    doc = (DOCS / "api.md").read_text(encoding="utf-8")
    for name in logkit.__all__:
        assert f"`{name}" in doc or f"{name}(" in doc or f" {name}," in doc, f"docs/api.md never mentions {name}"
    for cls in (logkit.Segment, logkit.Message, logkit.Reservation, logkit.SegmentIterator):
        for attr in dir(cls):
            if not attr.startswith("_"):
                assert f"`{attr}" in doc or f"{attr}(" in doc, f"docs/api.md never mentions {cls.__name__}.{attr}"
    for key in ("reserved", "written", "refused_full", "refused_too_big", "refused_out_of_service",
                "abandoned", "in_service", "bytes_used", "bytes_total", "salvages"):
        assert f"`{key}`" in doc, f"docs/api.md does not explain stats()['{key}']"
    for field in logkit.SalvageReport.__dataclass_fields__:
        assert f"`{field}`" in doc, f"docs/api.md does not explain SalvageReport.{field}"


def _section(doc: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of any level."""
    after = doc.split(heading, 1)[1]
    return re.split(r"^#{1,6} ", after, maxsplit=1, flags=re.M)[0]


def test_api_md_headings_match_the_signatures():
    """Every '### `name(args)`' heading states the real parameters and defaults."""
    doc = (DOCS / "api.md").read_text(encoding="utf-8")
    checked = 0
    for heading in re.findall(r"^### (.*)$", doc, re.M):
        for span in re.findall(r"`([A-Za-z_][\w.]*)\((.*?)\)`", heading):
            name, args = span
            if "." in name:
                obj = logkit
                for part in name.split("."):
                    obj = getattr(obj, part)
            elif callable(getattr(logkit, name, None)):
                obj = getattr(logkit, name)
            else:
                obj = getattr(logkit.Segment, name)
            # Parsed as a def's parameters, so a bare `*` (keyword-only) reads too.
            fn = ast.parse(f"def f({args}): pass").body[0].args
            # Defaults are written as Python expressions (`1 << 20`, `0o640`): evaluate them.
            value = lambda node: eval(compile(ast.Expression(node), "<heading>", "eval"), {})  # noqa: E731
            pos = fn.posonlyargs + fn.args
            defaults = [inspect.Parameter.empty] * (len(pos) - len(fn.defaults)) + [value(d) for d in fn.defaults]
            documented = [(a.arg, d) for a, d in zip(pos, defaults)]
            documented += [(a.arg, inspect.Parameter.empty if d is None else value(d))
                           for a, d in zip(fn.kwonlyargs, fn.kw_defaults)]
            runtime = [(p.name, p.default) for p in inspect.signature(obj).parameters.values()
                       if p.name != "self"]
            assert documented == runtime, f"docs/api.md heading `{name}({args})`: the code has {runtime}"
            checked += 1
    assert checked >= 12


def test_api_md_scan_keys_match_the_code():
    doc = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\* `(\w+)`:", _section(doc, "### `scan()`"), re.M)
    seg = logkit.Segment.format(bytearray(8192))
    try:
        assert documented == list(seg.scan()), "docs/api.md: the keys of scan() differ from the code"
    finally:
        seg.close()


def test_api_md_error_table_matches_the_classes():
    doc = (DOCS / "api.md").read_text(encoding="utf-8")
    rows = {}
    for row in _section(doc, "## Errors").splitlines():
        m = re.match(r"^\|\s*`(\w+)`\s*\|\s*(`?\w*`?)\s*\|", row)
        if m:
            rows[m.group(1)] = m.group(2).strip("`")
    assert set(rows) == set(logkit.errors.__all__), "docs/api.md: the errors table lists other errors than logkit.errors"
    for name, also in rows.items():
        cls = getattr(logkit, name)
        assert issubclass(cls, logkit.LogkitError)
        if also:
            assert issubclass(cls, getattr(builtins, also)), f"docs/api.md: {name} is said to be a {also}"


_IMPORT = re.compile(r"from (logkit[\w.]*) import (?:\(([^)]*)\)|([\w ,]+))")


def test_docs_imports_resolve():
    """Every `from logkit... import ...` the docs mention, in code or in prose, works."""
    import importlib
    import importlib.util
    modules = set()
    for doc in DOC_FILES:
        for module, in_parens, plain in _IMPORT.findall(doc.read_text(encoding="utf-8")):
            mod = importlib.import_module(module)
            modules.add(module)
            for name in (n.strip() for n in (in_parens or plain).split(",")):
                if name:
                    # `from pkg import submodule` imports the submodule when pkg lacks the name
                    ok = hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}") is not None
                    assert ok, f"{doc.name}: `from {module} import {name}` fails"
    assert "logkit.salvager" in modules


def test_api_md_c_api_table_matches_the_pxd():
    """Each lk_* function in the C-level API table takes as many arguments as _segment.pxd declares."""
    doc = (DOCS / "api.md").read_text(encoding="utf-8")
    pxd = (ROOT / "pyx" / "logkit" / "_segment.pxd").read_text(encoding="utf-8")
    pxd = re.sub(r"\s+", " ", pxd)
    table = _section(doc, "## The C-level API for Cython modules")
    checked = 0
    for name, args in re.findall(r"^\| `(lk_\w+)\(([^`]*)\)`", table, re.M):
        if args.strip() == "...":
            continue
        m = re.search(rf"\b{name}\(([^)]*)\)", pxd)
        assert m, f"docs/api.md documents {name}, which _segment.pxd does not declare"
        declared = [a for a in m.group(1).split(",") if a.strip() and a.strip() != "void"]
        documented = [a for a in args.split(",") if a.strip()]
        assert len(documented) == len(declared), (
            f"docs/api.md: {name} takes {len(declared)} arguments in _segment.pxd, "
            f"the table shows {len(documented)}")
        checked += 1
    assert checked >= 5


# ---------------------------------------------------------------- stubs vs the compiled modules

STUBS = {logkit._segment: ROOT / "logkit" / "_segment.pyi",
         **({logkit._bench: ROOT / "logkit" / "_bench.pyi"} if "logkit._bench" in sys.modules else {}),
         logkit._handler: ROOT / "logkit" / "_handler.pyi",
         logkit._scan: ROOT / "logkit" / "_scan.pyi"}


def _stub_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _stub_names(body) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    names[t.id] = node
    return names


def _runtime_public(module) -> set[str]:
    out = set()
    for name in dir(module):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        if (isinstance(obj, type) or callable(obj)) and getattr(obj, "__module__", "") in (
                "logkit.errors", "collections"):
            continue    # imported, not defined here
        out.add(name)
    return out


@pytest.mark.parametrize("module", list(STUBS), ids=lambda m: m.__name__)
def test_stub_names_match_the_compiled_module(module):
    stub = _stub_names(_stub_tree(STUBS[module]).body)
    runtime = _runtime_public(module)
    missing = runtime - set(stub)
    assert not missing, f"{STUBS[module].name} lacks {sorted(missing)}"
    invented = {n for n in stub if not n.startswith("_") and not hasattr(module, n)}
    assert not invented, f"{STUBS[module].name} declares names the module lacks: {sorted(invented)}"
    for name, node in stub.items():
        if not isinstance(node, ast.ClassDef) or not hasattr(module, name):
            continue
        cls = getattr(module, name)
        members = _stub_names(node.body)
        for attr in dir(cls):
            if issubclass(cls, tuple) and (attr.startswith("_") or attr in dir(tuple)):
                continue    # NamedTuple machinery
            if not attr.startswith("__") and attr not in members:
                pytest.fail(f"{STUBS[module].name}: class {name} lacks {attr}")
        for attr in members:
            if not (attr.startswith("__") and attr.endswith("__")):
                assert hasattr(cls, attr), f"{STUBS[module].name}: {name}.{attr} does not exist"


def _params(fn: ast.FunctionDef) -> list[tuple[str, bool]]:
    a = fn.args
    pos = a.posonlyargs + a.args
    defaults = [False] * (len(pos) - len(a.defaults)) + [True] * len(a.defaults)
    out = [(p.arg, d) for p, d in zip(pos, defaults)]
    if a.vararg:
        out.append(("*" + a.vararg.arg, False))
    out += [(p.arg, d is not None) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    return out


def _runtime_params(obj) -> list[tuple[str, bool]] | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    out = []
    for p in sig.parameters.values():
        name = "*" + p.name if p.kind is p.VAR_POSITIONAL else p.name
        out.append((name, p.default is not p.empty))
    return out


@pytest.mark.parametrize("module", list(STUBS), ids=lambda m: m.__name__)
def test_stub_signatures_match_the_compiled_module(module):
    tree = _stub_tree(STUBS[module])
    checked = 0
    for node in tree.body:
        targets = []
        if isinstance(node, ast.FunctionDef) and hasattr(module, node.name):
            targets.append((node, getattr(module, node.name)))
        elif isinstance(node, ast.ClassDef) and hasattr(module, node.name):
            cls = getattr(module, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name in vars(cls):
                    is_property = any(isinstance(d, ast.Name) and d.id == "property"
                                      for d in item.decorator_list)
                    raw = vars(cls)[item.name]
                    if is_property or not callable(getattr(cls, item.name)):
                        continue
                    fn = raw.__func__ if isinstance(raw, staticmethod) else getattr(cls, item.name)
                    targets.append((item, fn))
        for fn_node, obj in targets:
            runtime = _runtime_params(obj)
            if runtime is None:
                continue
            assert _params(fn_node) == runtime, (
                f"{STUBS[module].name}: {fn_node.name} is {_params(fn_node)} in the stub, "
                f"{runtime} at run time")
            checked += 1
    # Each stub declares at least this many callables whose signatures exist at run time.
    assert checked >= {logkit._handler: 2}.get(module, 3)
