"""The house rules of issue #14, checked: no module uses another module's
_private names, one frame judgement shared by the decoder and display, one
token codec, and the Handler's fast path chosen through a documented hook."""
from __future__ import annotations

import ast
import logging
import os
import re
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import logkit  # noqa: E402
from logkit import Segment  # noqa: E402
from logkit import inject  # noqa: E402
from logkit._segment import token_attempt, token_make, token_pid, token_state  # noqa: E402
from logkit.backends import pipe as P  # noqa: E402

SOURCES = sorted([*ROOT.glob("logkit/**/*.py"), *ROOT.glob("backends/*.py")])
# The compiled Cython core (pyx/): its modules are underscore-named as
# implementation modules; the package imports them as the layer below it.
CORE_MODULES = {"_segment", "_handler", "_scan", "_crypto"}
IGNORED_MODULES = {"os", "sys", "time", "_time", "logging", "threading", "weakref", "mmap", "signal",
                   "ctypes", "fcntl", "errno", "socket", "select", "struct", "json", "re", "tomllib",
                   "multiprocessing", "collections", "subprocess"}


def _defined_private_names(tree: ast.AST) -> set[str]:
    """_names a file defines itself: functions, classes, attributes it assigns
    (self._x = ..., X._x = ...), module globals, and class-level names."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[-1])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_")}


def _foreign_private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    mine = _defined_private_names(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in {"self", "cls"} | IGNORED_MODULES:
                continue
            if node.attr in mine:
                continue
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("logkit"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__") and a.name not in CORE_MODULES:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {a.name}")
    return out


# Files allowed to read another module's internals, and why (keep it short).
READS_INTERNALS = {
    # argparse has no public call for the actions a parser defines; the
    # completion scripts and the man page are made from them, through here.
    "logkit/cli/argdefs.py": "argparse internals (no public API)",
}


def test_no_module_uses_another_modules_private_names():
    """Issue #14: a layer that needs something of another gets a public,
    documented call of the module that owns it (this fails before the public
    core API: salvager.py used Segment._fix_word, family.py
    Segment._rotator_cas, server.py PartitionStorage._p, pipejournal.py
    partition._key, ...)."""
    found = [use for path in SOURCES if str(path.relative_to(ROOT)) not in READS_INTERNALS
             for use in _foreign_private_uses(path)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_the_cython_modules_use_no_private_name_of_another_module():
    """_handler.pyx and _scan.pyx use the core and the Python layers through
    public names only (Segment.raise_status, Message.make_at, ...)."""
    pattern = re.compile(r"\b(\w+)\.(_[a-z]\w*)\(")
    found = []
    for path in (ROOT / "pyx/logkit/_handler.pyx", ROOT / "pyx/logkit/_scan.pyx"):
        text = path.read_text()
        own = set(re.findall(r"(?:def|cdef|cpdef)\s+(?:[\w\*]+\s+)*(_[a-z]\w*)\s*\(", text))
        for n, line in enumerate(text.splitlines(), 1):
            for m in pattern.finditer(line.split("#")[0]):
                if m.group(1) != "self" and m.group(2) not in own:
                    found.append(f"{path.name}:{n}: {m.group(0)}")
    assert not found, found


# ---------------------------------------------------------------- one token codec

@pytest.mark.parametrize("state,attempt,pid", [(0, 0, 0), (6, 1, 4242), (7, (1 << 29) - 1, 0xFFFFFFFF), (2, 5, 1)])
def test_token_codec_round_trips(state, attempt, pid):
    t = token_make(state, attempt, pid)
    assert (token_state(t), token_attempt(t), token_pid(t)) == (state, attempt, pid)


def test_family_tokens_written_in_the_old_layout_read_the_same():
    """Before the one codec, a family's token had a 2-bit phase at bit 62
    (1 rotating, 2 installing, 3 done) and a 30-bit attempt: under the one
    layout those words read as phases 2, 4, 6 with the same attempt and pid."""
    from logkit.family import ROTATION_PHASES
    for old_phase, name in ((1, "rotating"), (2, "installing its successor"), (3, "rotation done")):
        word = (old_phase << 62) | (7 << 32) | 1234
        assert ROTATION_PHASES[token_state(word)] == name
        assert (token_attempt(word), token_pid(word)) == (7, 1234)


def test_the_core_has_one_token_layout():
    """lk_segment.h defines the layout once; no Python module shifts by 61 or 62."""
    header = (ROOT / "pyx/include/lk_segment.h").read_text()
    assert "lk_token_make" in header and "[T2]" in header
    for path in SOURCES:
        text = path.read_text()
        for m in re.finditer(r"(<<|>>) *6[12]\b", text):
            line = text[text.rfind("\n", 0, m.start()) + 1:text.find("\n", m.end())]
            assert "POSITION_MAX" in line, f"{path}: a token bit layout of its own: {line.strip()}"


# ---------------------------------------------------------------- one frame judgement

def test_display_judges_a_journal_frame_as_the_decoder_does(tmp_path):
    """Regression: display re-implemented the frame checks and accepted a
    frame whose flags carry an unknown bit (CRC made right), which the
    decoder rejects as damaged.  Both now use pipe.check_frame."""
    from logkit.cli.inspection_files import describe_journal
    from tests.fuzz.seeds import make_journal
    good = P.encode_record(b"fine", 20, b"", b"", 1, os.getpid(), 1)
    odd = bytearray(P.encode_record(b"odd flags", 20, b"", b"", 2, os.getpid(), 1))
    odd[5] |= 2                                          # an unknown flag
    struct.pack_into("<I", odd, 12, P._crc(odd))         # with its CRC made right
    payload = good + bytes(odd) + good
    dec = P.FrameDecoder()
    got = dec.feed(payload)
    assert [r.text for r in got] == ["fine", "fine"] and dec.damaged == 1
    path = str(tmp_path / "j.journal")
    make_journal(path, payload)
    d = describe_journal(path)
    kinds = [f["kind"] for f in d["frames"]]
    assert kinds == ["record", "damaged or partial bytes", "record"], d["frames"]


# ---------------------------------------------------------------- the fast sink hook

def _handler_for(tmp_path, storage_cls_name: str):
    from logkit.registry import StorageBackend  # noqa: F401
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.app]\nstorage = "{storage_cls_name}"\ndirectory = "{tmp_path / "logs"}"\n'
                   'create_directory = true\n')
    return logkit.Handler("app", config=cfg)


def test_the_handler_takes_the_fast_sink_the_transport_offers(tmp_path):
    h = _handler_for(tmp_path, "family")
    try:
        assert h._emitters[0].sink is not None            # shm over family: the C path
        lg = logging.getLogger("layering.fast")
        lg.addHandler(h)
        lg.propagate = False
        lg.warning("through the sink %d", 1)
        h.flush()
        assert [m.text for m in h.storage.reader()] == ["through the sink 1"]
    finally:
        h.close()


def test_a_storage_without_a_fast_sink_is_written_through_write(tmp_path):
    from logkit.backends.family import FamilyStorage

    class PlainFamily(FamilyStorage):
        def fast_sink(self):
            return None

    from logkit.backends.shm import ShmTransport
    t = ShmTransport(PlainFamily("app", directory=str(tmp_path), create_directory=True), "app")
    assert t.fast_sink() is None
    assert ShmTransport(FamilyStorage("app2", directory=str(tmp_path)), "app2").fast_sink() is not None


# ---------------------------------------------------------------- one text encoding

@pytest.mark.parametrize("text", ["plain", "caf\u00e9 \u2603", "bytes that were not UTF-8: \udcff\udc80"])
def test_every_write_path_stores_the_same_bytes_for_a_text(tmp_path, text):
    """Regression: write() encoded strict UTF-8 (a raw UnicodeEncodeError for
    a surrogate) while write_as() and write_stepwise() used surrogatepass
    (U+DCFF stored as ED B3 BF, not the byte FF it stood for)."""
    from logkit._segment import utf8_text
    want = utf8_text(text)
    with Segment.create(str(tmp_path / "e.seg"), size=16384) as seg:
        seg.write(text, data_class=text)
        seg.write_as(text, 20, b"", text, 1, 1, 1)
        inject.write_stepwise(seg, text, data_class=text)
        got = [(bytes(m.text_bytes), m.data_class) for m in seg]
    assert [g[0] for g in got] == [want] * 3
    assert len({g[1] for g in got}) == 1


def test_a_lone_surrogate_is_refused_alike_by_every_write_path(tmp_path):
    from logkit.errors import InvalidArgument
    with Segment.create(str(tmp_path / "s.seg"), size=8192) as seg:
        calls = [lambda: seg.write("x\ud800"), lambda: seg.write_as("x\ud800", 20, b"", "", 1, 1, 1),
                 lambda: inject.write_stepwise(seg, "x\ud800"), lambda: seg.write("x", data=b"d", data_class="\ud800")]
        for call in calls:
            with pytest.raises(InvalidArgument, match="lone surrogate U\\+D800"):
                call()
        assert seg.stats()["written"] == 0


# ---------------------------------------------------------------- one inspector per file kind

FILE_KINDS = {"segment", "partition", "plainfile", "journal", "pipe journal", "plain log file"}
COMMANDS = ("display_cmd.py", "stats_cmd.py", "verify_cmd.py", "salvage_cmd.py")


def _kind_comparisons(path: Path) -> list[str]:
    """Comparisons of anything with a file-kind string ("partition", ...)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        for c in [node.left, *node.comparators]:
            consts = c.elts if isinstance(c, (ast.Tuple, ast.List, ast.Set)) else [c]
            for k in consts:
                if isinstance(k, ast.Constant) and k.value in FILE_KINDS:
                    found.append(f"{path.name}:{node.lineno}: compares with {k.value!r}")
    return found


def test_the_reading_commands_never_branch_on_the_kind_of_file(tmp_path):
    """display, stats, verify and salvage ask the file's inspector
    (logkit.cli.inspectors); what each kind does lives in its class."""
    cli_dir = ROOT / "logkit" / "cli"
    bad = [f for name in COMMANDS for f in _kind_comparisons(cli_dir / name)]
    assert not bad, bad
    # The scan itself sees such a branch (it cannot pass vacuously).
    probe = tmp_path / "kind_probe.py"
    probe.write_text('if kind == "partition":\n    pass\n')
    assert _kind_comparisons(probe) == ["kind_probe.py:1: compares with 'partition'"]


def test_every_kind_of_file_has_an_inspector_for_every_command(tmp_path):
    from logkit.cli import inspectors as I
    from logkit.errors import InvalidArgument
    from tests.fuzz.seeds import make_journal
    seg_path = str(tmp_path / "s.seg")
    with Segment.create(seg_path, 1 << 16, family="s") as seg:
        seg.write("one", 20)
    journal = str(tmp_path / "j.journal")
    make_journal(journal, P.encode_record(b"fine", 20, b"", b"", 1, os.getpid(), 1))
    seg_i = I.inspector_for(seg_path)
    assert isinstance(seg_i, I.SegmentInspector)
    assert [r.good for r in seg_i.verify()] == [1]
    assert seg_i.stats()["segments"][0]["counters"]["written"] == 1
    assert seg_i.describe()["summary"]["committed"] == 1
    j = I.inspector_for(journal)
    assert isinstance(j, I.JournalInspector)
    assert [f["kind"] for f in j.describe()["frames"]] == ["record"]
    # What a kind cannot do is refused in words that name the file and why.
    with pytest.raises(InvalidArgument, match=r"j\.journal: salvage does not apply to a pipe journal"):
        j.salvage(0, 0, True)
    with pytest.raises(InvalidArgument, match=r"verify does not apply to a pipe journal"):
        j.verify()
    other = tmp_path / "notes.txt"
    other.write_text("not a log\n" * 100)
    with pytest.raises(InvalidArgument, match="not a segment or partition file"):
        I.inspector_for(str(other))
    assert isinstance(I.inspector_for(str(other), force=True), I.SegmentInspector)


# ---------------------------------------------------------------- the core imports no layer above it

CORE_SOURCES = ("_segment.pyx", "segment_functions.pxi", "segment_message.pxi", "segment_repair.pxi",
                "_crypto.pyx")


def _logkit_imports(text: str) -> set[str]:
    return set(re.findall(r"^\s*(?:from|import)\s+(logkit(?:\.\w+)*)\s", text, re.M))


def test_the_core_imports_nothing_of_the_layers_above_it():
    """The Cython core (layer 2) uses only itself and logkit.errors, the
    leaf every layer raises; the test harness reaches the C writer's steps
    by passing on_step to Segment.write_steps (logkit.inject.write_stepwise),
    not by the core importing logkit.inject."""
    allowed = {"logkit.errors", "logkit._segment", "logkit._crypto"}
    for name in CORE_SOURCES:
        got = _logkit_imports((ROOT / "pyx" / "logkit" / name).read_text())
        assert got <= allowed, f"{name} imports {sorted(got - allowed)}"
    assert _logkit_imports("    from logkit import inject\n") == {"logkit"}      # the scan sees one
