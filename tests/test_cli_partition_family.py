"""A partition log read by its name (issue 15, section 4): print, monitor
and stats read the destination family and then what the partition holds
undrained, as one sequence numbered as the drain numbers it, with no
message twice or missing while a drain runs (the drain held at its
injection points by real `logkit drain` processes); a loss report names the
family's sequence numbers; stats' top block is true of the whole log."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from logkit.backends.partition import PartitionStorage
from logkit.backends.partition_log import PartitionLogReader, open_log_reader
from logkit.inject import wait_for_point

HALF = "16KiB"


def cli(*args, env=None, timeout=60):
    e = dict(os.environ)
    e.pop("LOGKIT_CONFIG", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "logkit", *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


@pytest.fixture
def plog(tmp_path):
    """(config path, partition path, family directory) of a partition log `app`."""
    part, fam = tmp_path / "app.part", tmp_path / "fam"
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.app]\nstorage = "partition"\npath = "{part}"\nsize = "{HALF}"\n'
                   f'directory = "{fam}"\nsegment_size = "64KiB"\n')
    return str(cfg), str(part), str(fam)


def write_in_a_process(part, fam, first, count):
    """Write texts m{first}..m{first+count-1} into the partition from a
    process of their own (open and close swap as a real program's do)."""
    code = ("import sys\nfrom logkit.backends.partition import PartitionStorage\n"
            f"s = PartitionStorage('app', path={part!r}, size={HALF!r}, directory={fam!r})\n"
            f"for i in range({first}, {first + count}):\n    s.write(f'm{{i}}')\ns.close()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"the writing process failed: {r.stderr}"


def printed(cfg, *extra):
    """(sequence, text) of every message `logkit print app` prints (JSON)."""
    r = cli("print", "-c", cfg, "app", "-o", "json", *extra)
    assert r.returncode in (0, 1), f"logkit print failed: {r.stderr}"
    return [(o["sequence"], o["text"]) for o in map(json.loads, r.stdout.splitlines())]


def family_only(fam):
    from logkit.family import FamilyReader
    return [(m.sequence, m.text) for m in FamilyReader(fam, "app")]


def undrained(part):
    from logkit.backends.partition import open_reader
    return [m.text for m in open_reader(part)]


def test_print_of_a_partition_log_reads_its_family_then_the_undrained_as_the_drain_will_number_them(plog):
    cfg, part, fam = plog
    write_in_a_process(part, fam, 0, 150)
    d = cli("drain", "-c", cfg, "app")
    assert d.returncode == 0, d.stderr
    write_in_a_process(part, fam, 150, 100)
    assert family_only(fam) and undrained(part), "the test needs messages in both the family and the partition"
    before = printed(cfg)
    assert [t for _, t in before] == [f"m{i}" for i in range(250)], "every message once, in order"
    assert [s for s, _ in before] == list(range(1, 251)), "numbered on from the family's last message"
    d = cli("drain", "-c", cfg, "app", "--all")
    assert d.returncode == 0, d.stderr
    assert undrained(part) == [], "the drain left messages behind"
    assert family_only(fam) == before, "the drain numbered the messages otherwise than print did"
    assert printed(cfg) == before
    # --limits, a sequence range and --reverse see the same numbers.
    lim = cli("print", "-c", cfg, "app", "--limits")
    assert lim.returncode == 0 and "first 1 at" in lim.stdout and "last 250 at" in lim.stdout, lim.stdout


def test_selection_by_sequence_and_reverse_span_the_family_and_the_partition(plog):
    cfg, part, fam = plog
    write_in_a_process(part, fam, 0, 150)
    assert cli("drain", "-c", cfg, "app").returncode == 0
    write_in_a_process(part, fam, 150, 100)
    whole = printed(cfg)
    n_family = len(family_only(fam))
    assert 0 < n_family < 250
    lo, hi = n_family - 5, n_family + 5
    got = printed(cfg, "--from", str(lo), "--to", str(hi))     # sequence numbers across the seam
    assert got == [x for x in whole if lo <= x[0] <= hi] and [s for s, _ in got] == list(range(lo, hi + 1))
    rev = printed(cfg, "--reverse")
    assert rev == whole[::-1], "--reverse is not the forward order reversed"
    rd = open_log_reader(part, fam, "app")
    assert rd.seek(sequence=n_family + 3).sequence == n_family + 3
    assert [m.sequence for m in rd][:2] == [n_family + 3, n_family + 4]
    assert rd.count() == 250 - n_family - 2
    rd.rewind()
    assert rd.count() == 250


@pytest.mark.parametrize("point,hit", [("partition.drain.copied", 1), ("partition.drain.appended", 1),
                                       ("partition.drain.appended", 40)])
def test_print_while_a_drain_is_held_mid_copy_shows_every_message_once(plog, tmp_path, point, hit):
    cfg, part, fam = plog
    write_in_a_process(part, fam, 0, 80)
    assert cli("drain", "-c", cfg, "app", "--all").returncode == 0      # a family to number after
    write_in_a_process(part, fam, 80, 200)                              # a full half and more
    expected = [(i + 1, f"m{i}") for i in range(280)]
    assert printed(cfg) == expected
    notify = str(tmp_path / "notify")
    e = dict(os.environ, LOGKIT_INJECT=f"{point}=wait@{hit}", LOGKIT_INJECT_NOTIFY=notify)
    e.pop("LOGKIT_CONFIG", None)
    drain = subprocess.Popen([sys.executable, "-m", "logkit", "drain", "-c", cfg, "app", "--all"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    try:
        wait_for_point(notify, point, proc=drain)
        held = printed(cfg)
        assert held == expected, (f"with the drain held at {point} (#{hit}) print showed "
                                  f"{len(held)} messages; duplicates: "
                                  f"{sorted({t for _, t in held if [x for _, x in held].count(t) > 1})[:5]}")
        if point == "partition.drain.appended":
            assert len(family_only(fam)) == 80 + hit, "the held drain's copy is not in the family yet"
        mon = cli("monitor", "-c", cfg, "app", "--existing", "--interval", "0.05", "--idle-timeout", "0.5",
                  "-o", "json")
        assert mon.returncode == 0, mon.stderr
        assert [(o["sequence"], o["text"]) for o in map(json.loads, mon.stdout.splitlines())] == expected
        open(notify + ".go", "w").close()
        out, err = drain.communicate(timeout=60)
        assert drain.returncode == 0, err
    finally:
        if drain.poll() is None:
            drain.kill()
            drain.wait()
    assert printed(cfg) == expected
    assert family_only(fam) == expected, "the drain did not finish the whole log"


def _overflow_once(part, fam):
    """Write until exactly one overflow lost messages; return the texts' count."""
    s = PartitionStorage("app", path=part, size=HALF, directory=fam)
    try:
        i = 60
        while s.stats()["loss_events"] == 0:
            s.write(f"m{i}")
            i += 1
        for _ in range(5):
            s.write(f"m{i}")
            i += 1
        assert s.stats()["loss_events"] == 1
        return i, s.stats()["lost"]
    finally:
        s.close()


def test_a_loss_report_names_the_family_messages_between_which_the_loss_falls(plog):
    cfg, part, fam = plog
    write_in_a_process(part, fam, 0, 60)
    assert cli("drain", "-c", cfg, "app", "--all").returncode == 0
    assert len(family_only(fam)) == 60
    n, lost = _overflow_once(part, fam)
    assert lost > 0
    r = cli("print", "-c", cfg, "app", "-o", "json", "--expand")
    assert r.returncode == 0, r.stderr
    objs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["sequence"] for o in objs] == list(range(1, len(objs) + 1))
    reports = [o for o in objs if "messages lost" in o["text"]]
    assert len(reports) == 1, [o["text"] for o in objs if o["severity"] == 40]
    m = re.search(r"between messages (\d+) and (\d+) of family app; partition sequences (\d+)\.\.(\d+)\)$",
                  reports[0]["text"])
    assert m, f"the loss report does not name the family's sequence numbers: {reports[0]['text']}"
    a, b = int(m.group(1)), int(m.group(2))
    assert (a, b) == (60, 61), "the loss falls after the family's last drained message"
    by_seq = {o["sequence"]: o["text"] for o in objs}
    i_a, i_b = int(by_seq[a][1:]), int(by_seq[b][1:])
    assert i_b - i_a - 1 == lost, f"{lost} lost, but messages {by_seq[a]} and {by_seq[b]} are around the gap"
    rd = open_log_reader(part, fam, "app")
    rep = next(x for x in rd if x.data_class == "json" and x.severity == 40)
    data = json.loads(bytes(rep.data))
    assert data["family_between"] == [60, 61] and data["lost"] == lost and data["family"] == "app"
    # Drained, every message keeps the number print gave it (the report keeps
    # the partition's words, as the drain copied it).
    assert cli("drain", "-c", cfg, "app", "--all").returncode == 0
    assert [s for s, _ in family_only(fam)] == [o["sequence"] for o in objs]
    assert [t for _, t in family_only(fam) if not t.endswith(")")] == \
        [o["text"] for o in objs if "messages lost" not in o["text"]]


def test_stats_of_a_partition_log_counts_the_family_and_the_undrained_together(plog):
    cfg, part, fam = plog
    write_in_a_process(part, fam, 0, 150)
    assert cli("drain", "-c", cfg, "app").returncode == 0
    write_in_a_process(part, fam, 150, 40)
    n_family, n_pending = len(family_only(fam)), len(undrained(part))
    assert n_family + n_pending == 190 and n_pending > 0
    r = cli("stats", "-c", cfg, "app", "--json")
    assert r.returncode == 0, r.stderr
    (rep,) = json.loads(r.stdout)
    c = rep["counters"]
    assert (c["written"], c["family_written"], c["undrained"]) == (190, n_family, n_pending)
    assert c["drained"] == n_family and c["lost"] == 0 and "this_process" not in rep
    assert rep["family"]["family"] == "app" and rep["family"]["totals"]["written"] == n_family
    t = cli("stats", "-c", cfg, "app")
    assert t.returncode == 0 and "  written = 190\n" in t.stdout and f"  undrained = {n_pending}\n" in t.stdout
    assert f"  destination family 'app' in {fam}:" in t.stdout
    assert "takeovers" not in t.stdout, "a per-process counter shown as the log's"
    assert os.path.getsize(part) and undrained(part) != [], "stats must not drain or swap"


def _write_family_in_a_process(d, first, count):
    code = ("import logkit\n"
            f"w = logkit.open_writer({d!r}, family='app', segment_size='16KiB')\n"
            f"for i in range({first}, {first + count}):\n    w.write(f'message {{i}} ' + 'x' * 40)\n"
            "print(w.rotations)\nw.close()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


def test_stats_of_a_family_written_by_two_processes_counts_every_message_and_rotation(tmp_path):
    d = tmp_path / "fam"
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.app]\ndirectory = "{d}"\nsegment_size = "16KiB"\ncreate_directory = true\n')
    d.mkdir()
    rot = _write_family_in_a_process(str(d), 0, 600) + _write_family_in_a_process(str(d), 600, 600)
    history = [n for n in os.listdir(d) if n.startswith("app.")]
    assert rot >= 4 and len(history) == rot, (rot, history)
    r = cli("stats", "-c", cfg, "app")
    assert r.returncode == 0, r.stderr
    top = r.stdout.split("  segments (")[0]
    assert "  written = 1200\n" in top and f"  rotations = {rot}\n" in top, top
    assert f"  segments = {rot + 1}\n" in top and "this process" not in top
    (j,) = json.loads(cli("stats", "-c", cfg, "app", "--json").stdout)
    assert j["counters"]["written"] == 1200 and j["counters"]["rotations"] == rot
    assert "this_process" not in j
    # Older history removed: the rotations are no longer known; no figure pretends to be.
    oldest = sorted(history)[0]
    os.unlink(d / oldest)
    r = cli("stats", "-c", cfg, "app")
    assert re.search(rf"^  rotations = unknown \(.*at least {rot - 1}\)$", r.stdout, re.M), r.stdout
    (j,) = json.loads(cli("stats", "-c", cfg, "app", "--json").stdout)
    assert j["counters"]["rotations"] is None and j["counters"]["rotations_at_least"] == rot - 1


def test_the_reader_is_public_and_reads_an_empty_family_as_numbering_from_one(plog):
    cfg, part, fam = plog
    write_in_a_process(part, fam, 0, 10)
    rd = open_log_reader(part, fam, "app")
    assert isinstance(rd, PartitionLogReader) and rd.family_reader() is None
    assert [(m.sequence, m.text, m.partition_sequence) for m in rd] == \
        [(i + 1, f"m{i}", i + 1) for i in range(10)]
    lim = rd.limits()
    assert (lim.first_sequence, lim.last_sequence) == (1, 10)
    assert cli("drain", "-c", cfg, "app", "--all").returncode == 0
    assert family_only(fam) == [(i + 1, f"m{i}") for i in range(10)]


def test_a_drain_that_records_progress_while_print_reads_makes_print_look_again(plog, tmp_path):
    cfg, part, fam = plog
    write_in_a_process(part, fam, 0, 80)
    assert cli("drain", "-c", cfg, "app", "--all").returncode == 0
    write_in_a_process(part, fam, 80, 200)
    expected = [(i + 1, f"m{i}") for i in range(280)]
    notify = str(tmp_path / "notify")
    e = dict(os.environ, LOGKIT_INJECT="partition.log.taken=wait@1", LOGKIT_INJECT_NOTIFY=notify)
    e.pop("LOGKIT_CONFIG", None)
    reader = subprocess.Popen([sys.executable, "-m", "logkit", "print", "-c", cfg, "app", "-o", "json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    try:
        wait_for_point(notify, "partition.log.taken", proc=reader)   # the undrained taken, the family not yet read
        d = cli("drain", "-c", cfg, "app", "--all")                      # everything drained meanwhile
        assert d.returncode == 0, d.stderr
        assert undrained(part) == [] and len(family_only(fam)) == 280
        open(notify + ".go", "w").close()
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    got = [(o["sequence"], o["text"]) for o in map(json.loads, out.splitlines())]
    assert got == expected, f"{len(got)} messages printed for 280 (a drain ran while print read)"
