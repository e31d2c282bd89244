"""The inspection and maintenance commands: `logkit display`, `verify`,
`salvage`, `migrate`, `retain`, `stats` over paths, and the progress line.

Each runs against logs written here with known content: a family of several
segments, a segment with an open and an abandoned reservation, damaged
copies (bytes flipped as tests/test_damage.py does), a sealed family, a
partition and a plain file.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import logkit
import logkit.cli
from logkit import Segment
from logkit.backends.partition import PartitionStorage
from logkit.backends.plainfile import PlainFileStorage
from logkit.cli import inspection, retain_cmd
from logkit.cli.progress import Progress, human_bytes
from logkit.crypto import generate_key_file
from logkit.family import history_segments

ROOT = Path(__file__).resolve().parent.parent
SEG = "16KiB"             # 153 messages of 80 bytes a segment
N = 400                   # messages in the family: two history segments and the live one
TEXT = "message {:03d}"   # 11 characters: every message is exactly 80 bytes


def run(capsys, *argv):
    """logkit.cli.main(argv): (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = logkit.cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def cli(*args):
    return subprocess.run([sys.executable, "-m", "logkit", *map(str, args)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def write_family(directory, n=N, key_file=None, mode=0o640):
    w = logkit.open_writer(directory, "app", segment_size=SEG, key_file=key_file, mode=mode)
    for i in range(n):
        w.write(TEXT.format(i), severity=20 + i % 3)
    w.close()
    return logkit.open_reader(directory, "app").segment_paths()


@pytest.fixture
def family(tmp_path):
    d = tmp_path / "logs"
    return d, write_family(d)


@pytest.fixture
def stubs(tmp_path):
    """A segment: messages 1-3, an open reservation (4, this live process), an
    abandoned one (5), message 6; and a listener slot held by this process."""
    path = tmp_path / "stubs.seg"
    seg = Segment.create(path, size=16384, family="stubs")
    for i in range(3):
        seg.write(TEXT.format(i), severity=30)
    r = seg.reserve(12, data_class="k")
    seg.reserve(7).abandon()
    seg.write("the last one")
    slot = seg.listen(0.25)
    yield path, seg, r, slot
    seg.close()


def damaged_copy(src, dst, text_of=1, header=False):
    """A copy of segment `src` with a byte of message `text_of`'s text flipped
    (its checksum then fails), and with header=True the identity too."""
    buf = bytearray(Path(src).read_bytes())
    buf[4096 + 80 * text_of + 64] ^= 0x20
    if header:
        buf[100] ^= 0x01                     # the family name area: identity CRC fails
    Path(dst).write_bytes(buf)
    return 4096 + 80 * text_of


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def c_offsets():
    text = (ROOT / "pyx" / "include" / "lk_segment.h").read_text(encoding="utf-8")
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^#define\s+(LK_H_\w+)\s+(\d+)u?\b", text, re.M)}


# ---------------------------------------------------------------- --help

NEW = ["display", "verify", "salvage", "migrate", "retain", "stats"]


@pytest.mark.parametrize("command", NEW)
def test_every_tool_explains_itself_and_each_of_its_options(command, capsys):
    parser = logkit.cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    p = sub.choices[command]
    assert p.description and "Exit status" in p.description
    for action in p._actions:
        assert action.help and len(action.help) > 10, f"logkit {command}: {action.dest} has no help"
    with pytest.raises(SystemExit) as e:
        logkit.cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: logkit {command}")


def test_help_runs_as_a_real_command():
    r = cli("verify", "--help")
    assert r.returncode == 0 and "--key-file" in r.stdout and "failed authentication" in r.stdout


# ---------------------------------------------------------------- display

def test_display_names_header_fields_at_the_offsets_lk_segment_h_gives():
    c = c_offsets()
    for off, _, key, cname in inspection.HEADER_FIELDS:
        assert c[cname] == off, f"{key}: display says {off}, lk_segment.h says {c[cname]}"
    for off, key, cname in inspection.COUNTER_FIELDS:
        assert c[cname] == off, key
    assert c["LK_H_LISTENERS"] == inspection.LISTENERS_AT


def test_display_shows_every_header_field_counter_listener_and_record(stubs, capsys):
    path, seg, r, slot = stubs
    rc, out, err = run(capsys, "display", path)
    assert rc == 0 and err == ""
    h = seg.header()
    for key in h:
        if key != "listeners":
            assert re.search(rf"^\s+\d+\s+(LK_H_\w+\s+)?{key}\s", out, re.M), f"header field {key} not shown"
    assert re.search(rf"^\s+24\s+LK_H_UUID\s+uuid\s+{h['uuid']}$", out, re.M)
    assert re.search(r"^\s+64\s+LK_H_FAMILY\s+family\s+'stubs'$", out, re.M)
    assert "0x%016X (in service, COUNT 6," % h["reservation_word"] in out
    st = seg.stats()
    for key in ("written", "refused_full", "refused_too_big", "refused_out_of_service", "abandoned"):
        assert re.search(rf"^\s+\d+\s+LK_H_\w+\s+{key}( \(sum of 16 shards\))?\s+{st[key]}$", out, re.M), key
    assert f"slot  {slot} (offset {2112 + 64 * slot}): pid {os.getpid()} (alive), flags 0x0, min interval 0.25 s, last wake never" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s+\d{4,}\s+\d+\s+(committed|reserved|abandoned)", line)]
    assert [(int(x[0]), x[2], int(x[3])) for x in rows] == [
        (4096, "committed", 1), (4176, "committed", 2), (4256, "committed", 3),
        (r.offset, "reserved", 4), (r.offset + 80, "abandoned", 5), (r.offset + 152, "committed", 6)]
    assert "'message 000'" in out and "'the last one'" in out
    assert f"open reservation: writer pid {os.getpid()} (alive)" in out
    assert "4 committed, 1 reserved (open), 1 abandoned, 0 gap(s) (0 bytes), 0 damaged range(s)" in out


def test_display_json_agrees_with_the_segment_api(stubs, capsys):
    path, seg, r, _ = stubs
    rc, out, _ = run(capsys, "display", "--json", path)
    d = json.loads(out)
    assert rc == 0 and d["kind"] == "segment" and d["problems"] == []
    fields = {f["field"]: f for f in d["header"]}
    assert fields["sequence_base"]["offset"] == 40 and fields["sequence_base"]["value"] == 1
    assert fields["uuid"]["value"] == str(seg.uuid) and fields["magic"]["value"] == b"LOGKITSG".hex()
    assert [(x["offset"], x["length"], x["state"], x["sequence"]) for x in d["records"]] == \
        [(x.offset, x.length, x.kind, x.sequence) for x in seg.records(whole_region=True)]
    assert [x["text"] for x in d["records"] if x["state"] == "committed"] == \
        [TEXT.format(0), TEXT.format(1), TEXT.format(2), "the last one"]
    assert all(x["checksum"] == "good" for x in d["records"] if x["state"] == "committed")
    assert {c["counter"]: c["value"] for c in d["counters"]}["abandoned"] == 1
    assert d["listeners"][0]["pid"] == os.getpid() and d["listeners"][0]["alive"] is True


def test_display_header_only_and_records_only(stubs, capsys):
    path = stubs[0]
    _, out, _ = run(capsys, "display", "--header-only", path)
    assert "LK_H_RESERVATION" in out and "listener table" in out and "records (" not in out
    _, out, _ = run(capsys, "display", "--records-only", path)
    assert "records (" in out and "LK_H_MAGIC" not in out and "'the last one'" in out


def test_display_shows_a_damaged_segment_as_far_as_it_goes(stubs, tmp_path, capsys):
    bad = tmp_path / "bad.seg"
    at = damaged_copy(stubs[0], bad, text_of=1, header=True)
    with pytest.raises(logkit.SegmentDamaged):
        Segment.open(bad, readonly=True)
    rc, out, _ = run(capsys, "display", bad)
    assert rc == 0
    assert "problem: " in out and "header identity checksum mismatch (bytes 0..383)" in out
    assert "(MISMATCH: bytes 0..383 do not give this checksum)" in out
    assert re.search(rf"^\s+{at}\s+80\s+damaged\s", out, re.M)
    assert re.search(rf"message header at {at}: committed, sequence 2, total 80, checksum BAD", out)
    assert re.search(r"checksum BAD: stored 0x[0-9A-F]{8}, the bytes give 0x[0-9A-F]{8}", out)
    assert "'message 000'" in out and "'message 002'" in out and "'the last one'" in out
    # Cut short (not even one page of messages): the header is still decoded from the bytes.
    short = tmp_path / "short.seg"
    short.write_bytes(Path(stubs[0]).read_bytes()[:6000])
    rc, out, _ = run(capsys, "display", short)
    assert rc == 0 and "cannot be walked" in out and "LK_H_SEQUENCE_BASE       sequence_base        1" in out


def test_display_of_a_partition_shows_its_header_and_both_halves(tmp_path, capsys):
    st = PartitionStorage("buf", path=str(tmp_path / "b.part"), size="16KiB", directory=str(tmp_path / "fam"))
    for i in range(200):
        st.write(TEXT.format(i))
    st.close()
    rc, out, _ = run(capsys, "display", tmp_path / "b.part")
    assert rc == 0 and out.startswith(f"partition {tmp_path / 'b.part'}")
    assert re.search(r"^\s+136\s+generation\s+1$", out, re.M) and re.search(r"^\s+16\s+half_size\s+16384$", out, re.M)
    assert "half 0 at file offset 4096 (full):" in out and "half 1 at file offset 20480 (live):" in out
    assert "phase 2: full" in out
    assert "'message 000'" in out and "'message 199'" in out
    rc, out, _ = run(capsys, "display", "--json", tmp_path / "b.part")
    d = json.loads(out)
    assert [h["phase"] for h in d["halves"]] == ["full", "live"]
    assert sum(h["summary"]["committed"] for h in d["halves"]) == 200


def test_display_of_a_sealed_segment_opens_messages_only_with_the_key(tmp_path, capsys):
    kf = tmp_path / "k.keys"
    generate_key_file(kf)
    (live,) = write_family(tmp_path / "s", n=5, key_file=kf)
    _, out, _ = run(capsys, "display", "--records-only", live)
    assert out.count("k1 no key") == 5 and "'[encrypted]'" in out and "message 000" not in out
    _, out, _ = run(capsys, "display", "--records-only", "--key-file", kf, live)
    assert out.count("k1 ok") == 5 and "'message 004'" in out
    _, out, _ = run(capsys, "display", "--header-only", live)
    assert re.search(r"^\s+52\s+LK_H_FLAGS\s+flags\s+1 \(SEALED\)$", out, re.M)
    assert re.search(r"^\s+8\s+LK_H_VERSION\s+version\s+4$", out, re.M)


def test_display_errors_name_the_file_and_exit_2(tmp_path, capsys):
    rc, _, err = run(capsys, "display", tmp_path / "nope.seg")
    assert rc == 2 and err == f"logkit display: {tmp_path / 'nope.seg'}: no such file\n"
    rc, _, err = run(capsys, "display", tmp_path)
    assert rc == 2 and "is a directory, not a segment or partition file" in err
    (tmp_path / "notes.txt").write_text("just some text\n" * 100)
    rc, _, err = run(capsys, "display", tmp_path / "notes.txt")
    assert rc == 2 and "notes.txt: not a segment or partition file (no LOGKITSG or LKPART magic" in err
    seg = Segment.create(tmp_path / "x.seg", size=8192)
    seg.close()
    kf = tmp_path / "loose.keys"
    generate_key_file(kf)
    os.chmod(kf, 0o644)
    rc, _, err = run(capsys, "display", "--key-file", kf, tmp_path / "x.seg")
    assert rc == 2 and "has mode 0644" in err and "chmod 600" in err


# ---------------------------------------------------------------- verify

def test_verify_a_good_family_counts_every_message(family, capsys):
    d, paths = family
    assert len(paths) == 3
    rc, out, err = run(capsys, "verify", d)
    assert rc == 0 and err == ""
    assert f"{paths[0]}: 153 messages good" in out and f"{paths[2]}: 94 messages good" in out
    assert out.endswith(f"verify: 3 segment(s), {N} message(s) good; no problems found\n")
    rc, out, _ = run(capsys, "verify", "--quiet", d)
    assert rc == 0 and out == ""


def test_verify_reports_damage_by_file_and_offset_and_exits_1(family, tmp_path, capsys):
    d, paths = family
    at = damaged_copy(paths[1], paths[1], text_of=7)             # in place: a history segment
    rc, out, _ = run(capsys, "verify", "--quiet", d)
    assert rc == 1
    assert f"error: {paths[1]}: offset {at}: 80 damaged bytes ({at}..{at + 80}), no valid record" in out
    assert f"error: {paths[1]}: offset {at}: bad checksum (a message numbered {153 + 8})" in out
    assert f"{paths[1]}: 152 messages good: DAMAGED" in out
    assert f"{paths[0]}:" not in out and f"{paths[2]}:" not in out   # --quiet: only the segment with problems
    # A damaged header alone is a problem too, named.
    bad = tmp_path / "hdr.seg"
    damaged_copy(paths[0], bad, text_of=0, header=True)
    rc, out, _ = run(capsys, "verify", "--single", bad)
    assert rc == 1 and "header identity checksum mismatch" in out


def test_verify_a_segment_with_an_open_reservation_is_good_and_says_so(stubs, capsys):
    path, _, r, _ = stubs
    rc, out, _ = run(capsys, "verify", "--single", path)
    assert rc == 0
    assert f"{path}: 4 messages good; 1 sequence number(s) abandoned" in out
    assert f"note: offset {r.offset}: reservation 4 still open (writer pid {os.getpid()}, alive)" in out


def test_verify_sealed_messages_with_without_and_with_the_wrong_key(tmp_path, capsys):
    kf = tmp_path / "k.keys"
    generate_key_file(kf)
    d = tmp_path / "sealed"
    (live,) = write_family(d, n=20, key_file=kf)
    rc, out, _ = run(capsys, "verify", d)
    assert rc == 0 and "20 messages good; 20 sealed message(s) not authenticated (no key" in out
    rc, out, _ = run(capsys, "verify", "--key-file", kf, d)
    assert rc == 0 and f"{live}: 20 messages good (20 sealed, authenticated)" in out
    wrong = tmp_path / "wrong.keys"
    generate_key_file(wrong)                                     # also key id 1, other bytes
    rc, out, _ = run(capsys, "verify", "--key-file", wrong, d)
    assert rc == 1 and "is not the key this segment" in out and "were not authenticated" in out
    # Tampered: a text byte changed and the CRC-32C fixed up, as an attacker would.
    buf = bytearray(Path(live).read_bytes())
    at = 4096
    buf[at + 64] ^= 1
    tl, dl, cl = struct.unpack_from("<IIH", buf, at + 40)
    struct.pack_into("<I", buf, at + 60, logkit.crc32c(bytes(buf[at + 8:at + 60] + buf[at + 64:at + 64 + tl + cl + dl + 16])))
    forged = tmp_path / "forged.seg"
    forged.write_bytes(buf)
    rc, out, _ = run(capsys, "verify", "--single", "--key-file", kf, forged)
    assert rc == 1 and f"{forged}: 19 messages good (19 sealed, authenticated): DAMAGED" in out
    assert f"message 1 at offset {at} failed authentication" in out
    rc, _, err = run(capsys, "verify", "--key-file", tmp_path / "none.keys", d)
    assert rc == 2 and "--key-file" in err and "no such file" in err


def test_verify_a_partition_and_a_plain_file_and_the_config_logs(tmp_path, capsys):
    st = PartitionStorage("buf", path=str(tmp_path / "b.part"), size="16KiB", directory=str(tmp_path / "f"))
    for i in range(200):
        st.write(TEXT.format(i))
    st.close()
    rc, out, _ = run(capsys, "verify", tmp_path / "b.part")
    assert rc == 0 and "half 0 (offset 4096, full): 153 messages good" in out
    assert "half 1 (offset 20480, live): 47 messages good" in out
    plain = tmp_path / "app.log"
    ps = PlainFileStorage("txt", path=str(plain))
    for i in range(5):
        ps.write(TEXT.format(i))
    ps.close()
    rc, out, _ = run(capsys, "verify", plain)
    assert rc == 0 and f"{plain}: 5 messages good" in out
    lines = plain.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"message", b"massage")
    plain.write_bytes(b"".join(lines))
    rc, out, _ = run(capsys, "verify", plain)
    assert rc == 1 and "4 messages good: DAMAGED" in out and "line 2 (sequence" in out and "checksum mismatch" in out
    # With no LOG: every log of the configuration.
    cfg = tmp_path / "logkit.toml"
    write_family(tmp_path / "logs", n=10)
    cfg.write_text(f'[log.app]\ndirectory = "{tmp_path / "logs"}"\nsegment_size = "{SEG}"\n'
                   f'[log.buf]\nstorage = "partition"\npath = "{tmp_path / "b.part"}"\nsize = "16KiB"\n'
                   f'directory = "{tmp_path / "f"}"\n')
    rc, out, _ = run(capsys, "verify", "-c", cfg)
    assert rc == 0 and "verify: 3 segment(s), 210 message(s) good; no problems found" in out
    rc, _, err = run(capsys, "verify", "-c", cfg, "nosuch")
    assert rc == 2 and "logkit verify: nosuch: no such file or directory, and no log of that name" in err


def test_a_partition_with_a_damaged_header_is_reported_not_refused(tmp_path, capsys):
    part = tmp_path / "b.part"
    st = PartitionStorage("buf", path=str(part), size="16KiB", directory=str(tmp_path / "f"))
    for i in range(20):
        st.write(TEXT.format(i))
    st.close()
    buf = bytearray(part.read_bytes())
    buf[50] ^= 0x01                                             # the family name: identity CRC fails
    part.write_bytes(buf)
    rc, out, _ = run(capsys, "verify", part)
    assert rc == 1 and "partition header identity checksum mismatch (bytes 0..111, checksum at offset 112)" in out
    assert f"{part} (partition header): DAMAGED\n" in out
    assert re.search(r"half 0 \(offset 4096, \w+\): 20 messages good", out)
    rc, out, _ = run(capsys, "display", part)
    assert rc == 0 and "(MISMATCH)" in out and "'message 019'" in out


def test_verify_as_a_real_process(family):
    d, _ = family
    r = cli("verify", "-q", d)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    r = cli("verify", d / "missing")
    assert r.returncode == 2 and "logkit verify: " in r.stderr and "missing: no such file or directory" in r.stderr


# ---------------------------------------------------------------- unreadable segments

def as_unprivileged(argvs):
    """Run each command as a user who cannot read a mode-000 file: this
    process if it is not root, else a forked child that drops to nobody
    (root reads everything).  [(exit status, stdout, stderr)]."""
    def go():
        res = []
        for argv in argvs:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = logkit.cli.main([str(a) for a in argv])
            res.append((rc, out.getvalue(), err.getvalue()))
        return res
    if os.geteuid() != 0:
        return go()
    go()                         # as root first: every module the commands import lazily is loaded
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                 # pragma: no cover - the child
        try:
            os.close(r)
            os.setegid(65534)
            os.seteuid(65534)
            os.write(w, json.dumps(go()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_an_unreadable_segment_is_named_by_every_tool():
    d = Path(tempfile.mkdtemp())
    try:
        os.chmod(d, 0o755)                                 # reachable by the unprivileged user
        paths = write_family(d, mode=0o644)
        os.chmod(paths[0], 0)
        verify, display, stats, salvage = as_unprivileged(
            [["verify", d], ["display", paths[0]], ["stats", d], ["salvage", paths[0]]])
        assert verify[0] == 1
        assert f"{paths[0]}: NOT VERIFIED" in verify[1]
        assert f"error: cannot open {paths[0]}: Permission denied" in verify[1]     # logkit.safefs names it
        assert f"{paths[1]}: 153 messages good" in verify[1]
        assert display[0] == 2 and display[2] == f"logkit display: cannot open {paths[0]}: Permission denied\n"
        assert stats[0] == 1 and "cannot be read: " in stats[1] and "Permission denied" in stats[1]
        assert salvage[0] == 2 and "Permission denied" in salvage[2]
    finally:
        shutil.rmtree(d)


# ---------------------------------------------------------------- salvage

def test_salvage_dry_run_changes_nothing_then_salvage_does_it(stubs, capsys):
    path, seg, r, _ = stubs
    before = digest(path)
    rc, out, _ = run(capsys, "salvage", "--dry-run", "--grace", "0", path)
    assert rc == 1 and digest(path) == before
    assert f"{path}: (dry run: nothing written)" in out
    assert "4 finished message(s) kept" in out and "1 reservation(s) of dead or stalled writers would be abandoned" in out
    assert out.endswith("salvage: 1 segment(s); would find something in 1\n")
    assert [x.kind for x in seg.records()].count("reserved") == 1
    rc, out, _ = run(capsys, "salvage", "--grace", "0", path)
    assert rc == 1 and "1 reservation(s) of dead or stalled writers abandoned" in out
    assert [x.kind for x in seg.records()].count("reserved") == 0
    with pytest.raises(logkit.MessageLost):
        r.finish()
    rc, out, _ = run(capsys, "salvage", path)                   # nothing left to do
    assert rc == 0 and "verdict: nothing was wrong" in out and "2 sequence number(s) were already abandoned" in out


def test_salvage_leaves_a_live_writers_reservation_alone_within_grace(stubs, capsys):
    path, _, r, _ = stubs
    rc, out, _ = run(capsys, "salvage", path)
    assert rc == 0
    assert f"open reservation at offset {r.offset} (sequence 4): its writer, pid {os.getpid()}, still runs" in out


def test_salvage_of_a_damaged_segment_rebuilds_and_takes_it_out_of_service(stubs, tmp_path, capsys):
    bad = tmp_path / "bad.seg"
    at = damaged_copy(stubs[0], bad, text_of=1, header=True)
    rc, out, _ = run(capsys, "salvage", bad)
    assert rc == 1
    assert f"damaged bytes at offset {at}..{at + 80} (80 bytes)" in out
    assert "the header identity was damaged and has been rebuilt" in out
    assert "was taken out of service" in out
    with Segment.open(bad, readonly=True) as seg:                # its header is sound again
        assert not seg.in_service
        assert [m.text for m in seg] == [TEXT.format(0), TEXT.format(2), "the last one"]


def test_salvage_a_family_directory_and_a_partition(family, tmp_path, capsys):
    d, paths = family
    rc, out, _ = run(capsys, "salvage", d)
    assert rc == 0 and out.endswith("salvage: 3 segment(s); nothing was wrong\n")
    assert all(f"{p}:\n  " in out for p in paths)
    st = PartitionStorage("buf", path=str(tmp_path / "b.part"), size="16KiB", directory=str(tmp_path / "f"))
    for i in range(200):
        st.write(TEXT.format(i))
    st._cur.reserve(5)                                           # its writer "dies": never finished
    st.close()
    part = tmp_path / "b.part"
    before = digest(part)
    rc, out, _ = run(capsys, "salvage", "--dry-run", "--grace", "0", part)
    assert rc == 1 and digest(part) == before
    assert f"{part} half 0 (offset 4096): (dry run: nothing written)\n  153 finished message(s) kept" in out
    assert f"{part} half 1 (offset 20480): (dry run: nothing written)\n  47 finished message(s) kept\n" \
           "  1 reservation(s) of dead or stalled writers would be abandoned" in out
    rc, out, _ = run(capsys, "salvage", "--grace", "0", part)
    assert rc == 1 and "1 reservation(s) of dead or stalled writers abandoned" in out
    rc, out, _ = run(capsys, "salvage", part)
    assert rc == 0


def test_salvage_refuses_what_is_not_a_segment(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello\n" * 2000)
    before = digest(tmp_path / "notes.txt")
    rc, _, err = run(capsys, "salvage", tmp_path / "notes.txt")
    assert rc == 2 and "not a segment or partition file" in err and "--force" in err
    assert digest(tmp_path / "notes.txt") == before
    rc, _, err = run(capsys, "salvage", tmp_path / "nothing")
    assert rc == 2 and err == f"logkit salvage: {tmp_path / 'nothing'}: no such file or directory\n"
    for fam in ("a", "b"):
        Segment.create(tmp_path / fam, size=8192, family=fam).close()
    rc, _, err = run(capsys, "salvage", tmp_path)
    assert rc == 2 and "several families (a, b)" in err and "--family-name" in err
    rc, out, _ = run(capsys, "salvage", "--family-name", "b", tmp_path)
    assert rc == 0 and f"{tmp_path / 'b'}:" in out and f"{tmp_path / 'a'}:" not in out


# ---------------------------------------------------------------- migrate and retain

def test_migrate_moves_the_history_and_the_family_still_reads_end_to_end(family, tmp_path, capsys):
    d, paths = family
    dest = tmp_path / "archive"
    rc, out, _ = run(capsys, "migrate", d, "app", dest)
    assert rc == 0
    assert out.startswith(f"migrated 2 history segment(s) of family 'app' (32.8 kB) from {d} to {dest}:\n")
    assert f"  {dest / os.path.basename(paths[0])}\n  {dest / os.path.basename(paths[1])}\n" in out
    # the live segment stays; beside it only the preparer's next segment and lock (docs/format.md)
    assert [n for n in sorted(os.listdir(d)) if not n.startswith(".")] == ["app"]
    assert {n for n in os.listdir(d) if n.startswith(".")} <= {".app.next", ".app.prepare"}
    assert [m.text for m in logkit.open_reader([d, dest], "app")] == [TEXT.format(i) for i in range(N)]
    rc, out, _ = run(capsys, "migrate", d, "app", dest)
    assert rc == 0 and out.startswith("nothing to migrate: family 'app'")
    rc, _, err = run(capsys, "migrate", d, "other", dest)
    assert rc == 2 and err == f"logkit migrate: {d}: no family 'other' in the directory (it holds app)\n"
    rc, _, err = run(capsys, "migrate", tmp_path / "nodir", "app", dest)
    assert rc == 2 and "nodir: no such directory" in err
    rc, _, err = run(capsys, "migrate", d, "app", d)
    assert rc == 2 and "is the family's own directory" in err


def test_retain_dry_run_lists_exactly_what_retain_deletes(tmp_path, capsys):
    d = tmp_path / "logs"
    paths = write_family(d, n=1000)                              # six history segments
    hist = paths[:-1]
    assert len(hist) == 6
    rc, out, _ = run(capsys, "retain", "--dry-run", "--max-count", "4", "--max-size", "40KiB", d, "app")
    assert rc == 0 and all(os.path.exists(p) for p in paths)
    would = re.findall(r"^would delete (\S+) \(16\.4 kB, left service \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)$", out, re.M)
    assert would == hist[:4]                                     # count leaves 4, size 40 KiB leaves 2
    assert "app: would delete 4 history segment(s) (65.5 kB); would keep 2 (32.8 kB) and the live segment" in out
    rc, out, _ = run(capsys, "retain", "--max-count", "4", "--max-size", "40KiB", d, "app")
    assert rc == 0 and re.findall(r"^deleted (\S+) ", out, re.M) == would
    assert history_segments(d, "app") == hist[4:] and os.path.exists(paths[-1])
    # The plan follows logkit.retain for age too (a clock an hour ahead).
    import time
    later = time.time() + 3600
    assert retain_cmd.retention_plan(d, "app", max_age="30m", now=later) == hist[4:]
    assert logkit.retain(d, "app", max_age="30m", now=later) == hist[4:]


def test_retain_needs_a_limit_and_says_which_one_is_bad(family, capsys):
    d, _ = family
    rc, _, err = run(capsys, "retain", d, "app")
    assert rc == 2 and "give at least one limit: --max-age, --max-count or --max-size" in err
    rc, _, err = run(capsys, "retain", "--max-age", "soon", d, "app")
    assert rc == 2 and "--max-age: 'soon' is not a duration" in err
    rc, _, err = run(capsys, "retain", "--max-size", "lots", d, "app")
    assert rc == 2 and "--max-size" in err
    with pytest.raises(SystemExit) as e:
        logkit.cli.main(["retain", "--max-count", "-2", str(d), "app"])
    assert e.value.code == 2 and "argument --max-count: -2 is negative" in capsys.readouterr().err


# ---------------------------------------------------------------- stats

def test_stats_of_a_family_path_shows_every_segments_counters(family, capsys):
    d, paths = family
    rc, out, _ = run(capsys, "stats", d)
    assert rc == 0 and out.startswith(f"[{d}] family 'app' in {d}, 3 segment(s)\n")
    for p, written, full, role in ((paths[0], 153, 1, "history"), (paths[1], 153, 1, "history"),
                                   (paths[2], 94, 0, "live")):
        row = re.search(rf"^\s+{re.escape(os.path.basename(p))} \({role}\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out, re.M)
        assert row, (p, out)
        assert [int(x) for x in row.groups()] == [written, full, 0, 0, 0, written]
    assert re.search(rf"^\s+all 3\s+{N}\s+2\s+0\s+0\s+0\s+{N}\s", out, re.M)
    rc, out, _ = run(capsys, "stats", "--json", d)
    (r,) = json.loads(out)
    assert r["totals"]["written"] == N and [s["path"] for s in r["segments"]] == paths
    assert [s["counters"]["refused_full"] for s in r["segments"]] == [1, 1, 0]


def test_stats_of_config_logs_keeps_storage_counters_and_adds_segments(family, tmp_path, capsys):
    d, paths = family
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.app]\ndirectory = "{d}"\nsegment_size = "{SEG}"\n'
                   f'[log.buf]\nstorage = "partition"\npath = "{tmp_path / "b.part"}"\nsize = "16KiB"\n'
                   f'directory = "{tmp_path / "f"}"\n')
    st = PartitionStorage("buf", path=str(tmp_path / "b.part"), size="16KiB", directory=str(tmp_path / "f"))
    for i in range(400):                                        # no drain: a full half is reused
        st.write(TEXT.format(i))
    st.close()
    rc, out, _ = run(capsys, "stats", "-c", cfg)
    assert rc == 0
    assert f"[log.app] family over shm: family 'app' in {d}" in out
    assert "  rotations = 2\n" in out and f"  written = {N}\n" in out and "  segments (3, oldest first):" in out
    assert "[log.buf] partition over shm: partition " in out
    lost = re.search(r"^  lost = (\d+)$", out, re.M)
    assert lost and int(lost.group(1)) > 0
    assert "  halves (2, oldest first):" in out and re.search(r"^\s+half 0 \((full|live)\)\s+\d+", out, re.M)
    rc, out, _ = run(capsys, "stats", tmp_path / "b.part")       # by path: the partition header's counters
    assert rc == 0 and f"  lost = {lost.group(1)}\n" in out and "  swaps = " in out
    rc, _, err = run(capsys, "stats", "-c", cfg, "nosuch")
    assert rc == 2 and "nosuch: no such file or directory, and no log of that name in" in err


# ---------------------------------------------------------------- progress

class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_updates_one_line_on_a_terminal_and_is_silent_elsewhere():
    tty = _Tty()
    p = Progress("verify", total=40, stream=tty, interval=0)
    p.update(12, 1_234_567_890)
    assert tty.getvalue() == "\rverify: 12/40 segments, 1.2 GB"
    p.step(1000)
    assert tty.getvalue().endswith("\rverify: 13/40 segments, 1.2 GB")
    p.done()
    assert tty.getvalue().endswith("\r" + " " * len("verify: 13/40 segments, 1.2 GB") + "\r")
    pipe = io.StringIO()
    q = Progress("verify", total=3, stream=pipe)
    assert not q.enabled
    q.step(10)
    q.done()
    assert pipe.getvalue() == ""
    assert [human_bytes(n) for n in (0, 999, 1500, 34_500_000)] == ["0 B", "999 B", "1.5 kB", "34.5 MB"]


def test_progress_output_lines_never_run_into_the_progress_line(capsys):
    tty = _Tty()
    p = Progress("salvage", total=2, stream=tty, interval=0)
    p.step(100)
    p.write("a result line")
    assert capsys.readouterr().out == "a result line\n"
    assert tty.getvalue().endswith("\r" + " " * len("salvage: 1/2 segments, 100 B") + "\r")


def test_no_progress_in_a_pipe(family):
    d, _ = family
    r = cli("verify", d)
    assert r.returncode == 0 and r.stderr == "" and "\r" not in r.stdout
