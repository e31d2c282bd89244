"""One inspector per file kind: segment, partition, pipe journal, plain file.

`logkit display`, `stats`, `verify` and `salvage` each ask an inspector
for what they need and never branch on the kind of file themselves:

    inspector_for(path, ring)        the file's kind read from its bytes
    inspector_of(src, path, ring)    the kind sources.resolve() found

and then, whatever the kind:

    .describe(records)   every field and record (display --json)
    .lines(d, header, records)       what display prints of describe()
    .stats()             counters (stats)
    .verify()            a Report per segment or half (verify)
    .salvage(grace, settle, dry_run) [(name, SalvageReport or why not)]

An inspector is a cheap handle (a path and a key ring): each call opens the
file and closes it again.  A kind that cannot do something (salvage a pipe
journal) raises InvalidArgument saying why.  What the inspectors read comes
from the inspection library: logkit.cli.inspection (segments) and
logkit.cli.inspection_files (partitions, journals).
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field

from logkit import safefs
from logkit._segment import Segment
from logkit.errors import InvalidArgument, LogkitError
from logkit.salvager import SalvageReport, salvage
from logkit.server import read_status

from . import inspection as insp
from .inspection import LISTENERS_AT, iso, preview
from .inspection_files import PartitionView, describe_journal, describe_partition, is_journal


# ---------------------------------------------------------------- verify's report

@dataclass
class Report:
    """What verify found in one segment (or half, or plain file)."""

    name: str
    size: int = 0
    good: int = 0                      # messages whose checksum (and seal, if opened) is good
    authenticated: int = 0             # of those, sealed messages opened with the key
    sealed_no_key: int = 0             # sealed messages whose seal could not be checked
    abandoned: int = 0
    bad_checksums: list[tuple[int, int | None]] = field(default_factory=list)   # (offset, sequence)
    tampered: list[tuple[int, int | None, str]] = field(default_factory=list)   # (offset, sequence, why)
    damaged: list[tuple[int, int]] = field(default_factory=list)
    open: list[tuple[int, int | None, int, bool]] = field(default_factory=list)  # (offset, seq, pid, alive)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)    # header, key, unreadable, damaged lines
    notes: list[str] = field(default_factory=list)
    unreadable: bool = False
    header_only: bool = False          # a partition header: no messages of its own

    @property
    def wrong(self) -> bool:
        return bool(self.problems or self.damaged or self.bad_checksums or self.tampered)

    def lines(self) -> list[str]:
        head = f"{self.name}: {self.good} message{'s' if self.good != 1 else ''} good"
        if self.authenticated:
            head += f" ({self.authenticated} sealed, authenticated)"
        if self.sealed_no_key:
            head += (f"; {self.sealed_no_key} sealed message(s) not authenticated (no key for them; "
                     f"give --key-file)")
        if self.abandoned:
            head += f"; {self.abandoned} sequence number(s) abandoned"
        if self.header_only:
            head = f"{self.name}: {'DAMAGED' if self.wrong else 'sound'}"
        elif self.unreadable:
            head = f"{self.name}: NOT VERIFIED"
        elif self.wrong:
            head += ": DAMAGED"
        out = [head]
        for p in self.problems:
            out.append(f"  error: {p}")
        for a, b in self.damaged:
            out.append(f"  error: {self.name}: offset {a}: {b - a} damaged bytes ({a}..{b}), no valid record")
        for off, seq in self.bad_checksums:
            out.append(f"  error: {self.name}: offset {off}: bad checksum"
                       + (f" (a message numbered {seq})" if seq is not None else ""))
        for off, seq, why in self.tampered:      # the reason names the file, message and offset
            out.append(f"  error: {why or f'{self.name}: offset {off}: message {seq} failed authentication'}")
        for off, seq, pid, alive in self.open:
            out.append(f"  note: offset {off}: reservation {seq} still open (writer pid {pid}, "
                       f"{'alive' if alive else 'gone: logkit salvage abandons it'})")
        for a, b in self.gaps:
            out.append(f"  note: offset {a}: gap of {b - a} bytes (claims whose writers left no stub)")
        for n in self.notes:
            out.append(f"  note: {n}")
        return out


def verify_view(view: "insp.SegmentView", rep: Report) -> None:
    """Fill `rep` from the walk of one segment region (a file or a half)."""
    if view.problem:
        rep.problems.append(view.problem)
    if view.key_problem:
        if view.key_wrong:
            rep.problems.append(f"{view.key_problem}; its messages were not authenticated")
        else:
            rep.notes.append(view.key_problem)
    if view.seg is None:
        rep.problems.append(f"{view.name}: cannot be walked (too small, or not a segment)")
        return
    if view.seg.key_check_problem:
        rep.problems.append(view.seg.key_check_problem)
    for r in insp.walk(view, texts=False, authenticate=True):
        state = r["state"]
        if state == "committed":
            if r.get("checksum") != "good":
                rep.bad_checksums.append((r["offset"], r["sequence"]))
                continue
            seal = r.get("seal", "-")
            if seal.startswith("FAILED"):
                rep.tampered.append((r["offset"], r["sequence"], seal[len("FAILED: "):]))
                continue
            rep.good += 1
            if seal == "ok":
                rep.authenticated += 1
            elif seal == "no key":
                rep.sealed_no_key += 1
        elif state == "reserved":
            rep.open.append((r["offset"], r["sequence"], r.get("pid", 0), r.get("writer_alive", False)))
        elif state == "abandoned":
            rep.abandoned += r["span"] or 1
        elif state == "gap":
            rep.gaps.append((r["offset"], r["offset"] + r["length"]))
        else:
            rep.damaged.append((r["offset"], r["offset"] + r["length"]))
            for c in r.get("candidates", []):
                if c["state"] == "committed" and c.get("checksum") == "BAD":
                    rep.bad_checksums.append((c["offset"], c["sequence"]))


def _counter_values(view: "insp.SegmentView") -> dict:
    return {k: (bool(v) if isinstance(v, bool) else int(v)) for k, v in insp.counters_of(view).items()}


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# ---------------------------------------------------------------- display's text

def header_lines(d: dict, indent: str = "") -> list[str]:
    """A segment's header fields, counters and listener table, one per line."""
    lines = [f"{indent}header (offsets from the start of the region; docs/format.md):"]
    for r in d["header"]:
        off = "" if r["offset"] is None else str(r["offset"])
        lines.append(f"{indent}  {off:>5}  {r['c_name']:<24} {r['field']:<20} {r['shown']}")
    lines.append(f"{indent}counters:")
    for r in d["counters"]:
        off = "" if r["offset"] is None else str(r["offset"])
        what = r["counter"] + (" (sum of 16 shards)" if r["counter"] == "written" else "")
        lines.append(f"{indent}  {off:>5}  {r['c_name']:<24} {what:<26} {r['value']}")
    used = d["listeners"]
    lines.append(f"{indent}listener table (offset 2048, 25 slots of 64 bytes at 2112): "
                 + (f"{len(used)} slot(s) in use" if used else "no slot in use"))
    for s in used:
        last = iso(s["last_wake_ns"]) if s["last_wake_ns"] else "never"
        lines.append(f"{indent}  slot {s['slot']:>2} (offset {LISTENERS_AT + 64 * s['slot']}): pid {s['pid']} "
                     f"({'alive' if s['alive'] else 'dead'}), flags 0x{s['flags']:X}"
                     f"{' (WAITING)' if s['waiting'] else ''}, min interval {s['min_interval_ns'] / 1e9:g} s, "
                     f"last wake {last}")
    return lines


def record_lines(d: dict, indent: str = "") -> list[str]:
    """A segment's records (the walk of its region), one per line."""
    recs = d.get("records", [])
    lines = [f"{indent}records (the walk of the whole region; offsets from the start of the region):"]
    if not recs:
        lines.append(f"{indent}  none")
    else:
        lines.append(f"{indent}  {'offset':>8} {'length':>7}  {'state':<9}  {'sequence':>8}  {'sev':>4}  "
                     f"{'time':<30}  {'pid':>7}  {'checksum':<9}  {'seal':<10}  text")
    for r in recs:
        seq = "" if r.get("sequence") is None else str(r["sequence"])
        if r.get("span") and r["span"] > 1:
            seq += f"+{r['span'] - 1}"
        sev = "" if r.get("severity") is None else str(r["severity"])
        t = iso(r["time"]) if r.get("time") else ""
        pid = "" if r.get("pid") is None else str(r["pid"])
        seal = r.get("seal") or ("-" if r["state"] in ("reserved", "abandoned") else "")
        seal_col = "ok" if seal == "ok" else "FAILED" if seal.startswith("FAILED") else seal
        if r.get("key_id"):
            seal_col = f"k{r['key_id']} {seal_col}"
        text = preview(r["text"]) if "text" in r else f"({r['note']})" if r.get("note") else ""
        lines.append(f"{indent}  {r['offset']:>8} {r['length']:>7}  {r['state']:<9}  {seq:>8}  {sev:>4}  "
                     f"{t:<30}  {pid:>7}  {r.get('checksum', ''):<9}  {seal_col:<10}  {text}")
        if seal.startswith("FAILED"):
            lines.append(f"{indent}      {seal}")
        for c in r.get("candidates", []):
            lines.append(f"{indent}      message header at {c['offset']}: {c['state']}, sequence "
                         f"{c['sequence']}, total {c['total']}"
                         + (f", checksum {c['checksum']}" if "checksum" in c else "")
                         + (f", text {preview(c['text'])}" if c.get("text") else ""))
            for p in c["problems"]:
                lines.append(f"{indent}        {p}")
    s = d.get("summary")
    if s:
        lines.append(f"{indent}  {s['committed']} committed, {s['reserved']} reserved (open), "
                     f"{s['abandoned']} abandoned, {s['gaps']} gap(s) ({s['gap_bytes']} bytes), "
                     f"{s['damaged']} damaged range(s) ({s['damaged_bytes']} bytes)")
    return lines


def segment_lines(d: dict, header: bool, records: bool, indent: str = "") -> list[str]:
    lines = [f"{indent}problem: {p}" for p in d["problems"]]
    if header:
        lines += header_lines(d, indent)
    if records:
        lines += record_lines(d, indent)
    return lines


# ---------------------------------------------------------------- the inspectors

class Inspector:
    """What the reading tools may ask of one file; a kind overrides what it can do."""

    kind = "file"
    has_segments = True                  # stats() gives a row per segment (or half)

    def __init__(self, path: str, ring=None, src=None):
        self.path = path
        self.ring = ring
        self.src = src                   # the sources.Source it came from, if any

    def _cannot(self, what: str, why: str):
        raise InvalidArgument(f"{self.path}: {what} does not apply to a {self.kind}: {why}")

    def describe(self, records: bool = True) -> dict:
        self._cannot("display", "logkit display shows segment, partition and pipe journal files")

    def lines(self, d: dict, header: bool, records: bool) -> list[str]:
        return [f"{self.kind} {self.path}"]

    def stats(self) -> dict:
        """{"segments": rows, "counters": own counters?, "margins": ?, "where": words}."""
        return {"segments": [], "where": f"{self.kind} {self.path}"}

    def verify(self) -> list[Report]:
        self._cannot("verify", "it holds no messages of its own")

    def salvage(self, grace: float, settle: float, dry_run: bool) -> list[tuple[str, SalvageReport | str]]:
        self._cannot("salvage", "logkit salvage repairs segment and partition files")


class SegmentInspector(Inspector):
    """One segment file (live or history), damaged or headerless."""

    kind = "segment"

    def describe(self, records: bool = True) -> dict:
        with insp.SegmentView.open_file(self.path, self.ring) as view:
            d = insp.describe_segment(view, records=records)
        return {"file": self.path, "kind": "segment", **d}

    def lines(self, d: dict, header: bool, records: bool) -> list[str]:
        return [f"segment {self.path}"] + segment_lines(d, header, records)

    def stats(self) -> dict:
        """One row: {"path", "counters"}, or {"path", "problem"} if unreadable;
        a damaged header is noted, and its counters are read all the same."""
        row: dict = {"path": self.path}
        try:
            view = insp.SegmentView.open_file(self.path)
        except LogkitError as e:
            if not os.path.exists(self.path):
                row["gone"] = True
            row["problem"] = str(e)
        else:
            with view:
                row["counters"] = _counter_values(view)
                if view.problem:
                    row["note"] = view.problem
        family = getattr(self.src, "family", None)
        return {"segments": [row], "where": f"segment {self.path}" + (f" of family '{family}'" if family else "")}

    def verify(self) -> list[Report]:
        path = self.path
        rep = Report(path, size=_size(path))
        gone = f"{path} disappeared while verifying (rotated or removed by retention)"
        if not os.path.exists(path):
            rep.notes.append(gone)
            return [rep]
        try:
            view = insp.SegmentView.open_file(path, self.ring)
        except LogkitError as e:
            if not os.path.exists(path):
                rep.notes.append(gone)
            else:
                rep.problems.append(str(e))
                rep.unreadable = True
            return [rep]
        with view:
            verify_view(view, rep)
            if view.problem and rep.problems and rep.problems[0] == view.problem \
                    and bytes(view.region[:8]) != insp.SEGMENT_MAGIC:
                rep.problems[0] = f"{view.problem} (the header: offset 0..{insp.HEADER_SIZE})"
        return [rep]

    def salvage(self, grace: float, settle: float, dry_run: bool) -> list[tuple[str, SalvageReport | str]]:
        """Salvage the file: in place, or (dry run) through a private mapping."""
        path = self.path
        if not os.path.lexists(path):
            return [(path, "skipped: it disappeared (rotated or removed by retention meanwhile)")]
        if not os.access(path, os.R_OK | (0 if dry_run else os.W_OK)):
            need = "read" if dry_run else "read and write"
            raise LogkitError(f"{path}: permission denied (salvage needs to {need} the file)")
        if dry_run:
            mm = insp.map_file(path, private=True)
            try:
                seg = Segment.from_buffer(mm, 0, len(mm), False, path=path, check_header=False)
                try:
                    return [(path, salvage(seg, grace=grace, settle=settle))]
                finally:
                    seg.close()
            finally:
                try:
                    mm.close()
                except BufferError:
                    pass
        # Opened here, not by name in salvage(): no link is followed and the
        # file must be a regular file (logkit.safefs), so a name planted in a
        # family directory that others can write never makes salvage rewrite
        # the header of a file outside it.
        try:
            fd = safefs.open_file(path, os.O_RDWR)
        except FileNotFoundError:
            raise LogkitError(f"{path}: no such file (rotated or removed meanwhile?)") from None
        except LogkitError:
            raise                             # UnsafePath (a link, a FIFO), DiskFull, ...: as they are
        except OSError as e:
            raise LogkitError(f"{path}: cannot open the file for salvage: {e.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise LogkitError(f"{path}: the file is empty, not a segment")
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise LogkitError(f"{path}: cannot map the file for salvage: {e.strerror}") from None
        finally:
            os.close(fd)
        seg = Segment.from_buffer(mm, 0, size, False, path=path, close_buffer=True, check_header=False)
        try:
            return [(path, salvage(seg, grace=grace, settle=settle))]
        finally:
            seg.close()


class PartitionInspector(Inspector):
    """A laurel/hardy partition file: its header and both halves as segments."""

    kind = "partition"

    def describe(self, records: bool = True) -> dict:
        with PartitionView(self.path, self.ring) as pv:
            return describe_partition(pv, records=records)

    def lines(self, d: dict, header: bool, records: bool) -> list[str]:
        out = [f"partition {self.path}"]
        out += [f"problem: {p}" for p in d["problems"]]
        out += [f"note: {n}" for n in d["notes"]]
        if header:
            out.append("partition header (docs/partition-format.md):")
            out += [f"  {r['offset']:>5}  {r['field']:<14} {r['shown']}" for r in d["partition_header"]]
        for h in d["halves"]:
            out.append(f"half {h['half']} at file offset {h['file_offset']} ({h['phase']}):")
            if "header" in h:
                out += segment_lines(h, header, records, "  ")
            else:
                out += [f"  problem: {p}" for p in h["problems"]]
        return out

    def stats(self) -> dict:
        """Each half's header counters, and the partition header's own (lost
        to overflow, swaps, drained...), read without opening it for writing;
        with the margin crossings a server recorded, if any."""
        path = self.path
        rows: list[dict] = []
        own: dict = {}
        try:
            pv = PartitionView(path)
        except LogkitError as e:
            rows = [{"path": path, "problem": str(e)}]
        else:
            with pv:
                f = pv.fields
                own = {"lost": f.get("lost"), "loss_events": f.get("loss_events"), "swaps": f.get("generation"),
                       "drained": f.get("drained"), "drain_progress": f.get("progress"),
                       "half_size": pv.half_size}
                for i, off, view in pv.halves:
                    r: dict = {"path": f"{path} half {i}", "half": i, "phase": pv.phase_of(i)}
                    if view is None:
                        r["problem"] = f"half {i} at offset {off} is too small to be a segment"
                    else:
                        r["counters"] = _counter_values(view)
                        if view.problem:
                            r["note"] = view.problem
                    rows.append(r)
                rows += [{"path": path, "problem": p} for p in pv.problems]
        if own:
            own["written"] = sum(int(r.get("counters", {}).get("written", 0)) for r in rows)
            own["reserved"] = sum(int(r.get("counters", {}).get("reserved", 0)) for r in rows)
        out = {"segments": rows, "counters": own, "where": f"partition {path}"}
        st = read_status(path)
        if st is not None:
            out["margins"] = {"crossings": st.get("crossings", {}), "fill": st.get("fill"),
                              "updated": st.get("updated")}
        return out

    def verify(self) -> list[Report]:
        path = self.path
        try:
            pv = PartitionView(path, self.ring)
        except LogkitError as e:
            return [Report(path, problems=[str(e)], unreadable=True)]
        out = []
        with pv:
            head = Report(f"{path} (partition header)", size=4096, header_only=True)
            head.problems.extend(pv.problems)
            head.notes.extend(pv.notes)
            if head.problems or head.notes:
                out.append(head)
            for i, off, view in pv.halves:
                rep = Report(f"{path} half {i} (offset {off}, {pv.phase_of(i)})", size=pv.half_size)
                if view is None:
                    rep.problems.append(f"{path}: half {i} at offset {off} is too small to be a segment")
                elif pv.intent_half == i:
                    rep.notes.append("not walked: it was being formatted for reuse (see the partition header)")
                else:
                    verify_view(view, rep)
                out.append(rep)
        return out

    def salvage(self, grace: float, settle: float, dry_run: bool) -> list[tuple[str, SalvageReport | str]]:
        """Salvage both halves: (name, report, or why it was skipped)."""
        path = self.path
        if dry_run:
            with PartitionView(path, None, private=True) as pv:
                if pv.problems and not pv.identity_ok:
                    raise LogkitError("; ".join(pv.problems) + " (salvage does not rebuild a partition header)")
                out: list[tuple[str, SalvageReport | str]] = []
                for i, off, view in pv.halves:
                    name = f"{path} half {i} (offset {off})"
                    if pv.intent_half == i:
                        out.append((name, "skipped: it was being formatted for reuse when its swapper stopped"))
                        continue
                    seg = Segment.from_buffer(pv.mm, off, pv.half_size, False, path=f"{path}@{off}",
                                              check_header=False)
                    try:
                        out.append((name, salvage(seg, grace=grace, settle=settle)))
                    finally:
                        seg.close()
                return out
        from logkit.backends.partition import Partition
        if not os.access(path, os.R_OK | os.W_OK):
            raise LogkitError(f"{path}: permission denied (salvage needs to read and write the file)")
        # Partition opens the file by name (backends/partition.py): refuse a
        # link or another kind of file first (a swap after this check is
        # left to Partition's own open).
        os.close(safefs.open_file(path, os.O_RDONLY))
        try:
            p = Partition(path, create=False)
        except OSError as e:
            raise LogkitError(f"{path}: cannot open the partition: {e.strerror}") from None
        try:
            out = []
            for i, h in enumerate(p.halves):
                name = f"{path} half {i} (offset {p.offsets[i]})"
                if p.intent_half() == i:
                    out.append((name, "skipped: it was being formatted for reuse when its swapper "
                                      "stopped (a writer or drain finishes that; its messages were counted lost)"))
                    continue
                out.append((name, salvage(h, grace=grace, settle=settle)))
            return out
        finally:
            p.close()


class JournalInspector(Inspector):
    """A pipe reader's journal: its header words and the frames it still holds."""

    kind = "pipe journal"
    has_segments = False

    def describe(self, records: bool = True) -> dict:
        return describe_journal(self.path, records=records)

    def lines(self, d: dict, header: bool, records: bool) -> list[str]:
        out = [f"pipe journal {d['file']}"]
        out += [f"problem: {p}" for p in d["problems"]]
        if header:
            out.append("header (docs/pipe-format.md):")
            out += [f"  {r['offset']:>5}  {r['field']:<12} {r['shown']}" for r in d["header"]]
        if records:
            out.append(f"frames from resolve to end ({d['pending_bytes']} bytes):")
            for fr in d["frames"]:
                where = f"  {fr['position']:>10}  {fr['length']:>5} B  {fr['kind']:<8}"
                if fr["kind"] == "record":
                    out.append(f"{where} {'stored ' if fr['stored'] else 'pending'} pid {fr['pid']} "
                               f"tid {fr['tid']} severity {fr['severity']}  {fr['text']!r}")
                elif fr["kind"] == "fragment":
                    out.append(f"{where} pid {fr['pid']} tid {fr['tid']} record {fr['record_id']} "
                               f"fragment {fr['index'] + 1} of {fr['count']}")
                else:
                    out.append(where)
            if not d["frames"]:
                out.append("  (none: every byte taken from the FIFO is resolved)")
        return out

    def stats(self) -> dict:
        """The journal's header words (docs/pipe-format.md), or why not."""
        from logkit.backends.pipejournal import read_journal_header
        out: dict = {"path": self.path}
        if not os.path.exists(self.path):
            out["problem"] = "none yet (no reader has run)"
        else:
            try:
                out.update(read_journal_header(self.path))
            except (OSError, LogkitError) as e:
                out["problem"] = str(e)
        return {"segments": [], "journal": out, "where": f"pipe journal {self.path}"}

    def verify(self) -> list[Report]:
        self._cannot("verify", "it holds frames on their way to a log, not the log; verify the log the "
                               "pipe reader stores into (logkit display shows the journal's frames)")


class PlainFileInspector(Inspector):
    """A plain log file (and its rotated files), read through its reader."""

    kind = "plain log file"
    has_segments = False

    def _reader(self):
        if self.src is None:
            raise InvalidArgument(f"{self.path}: a plain log file is read through its configured log or "
                                  f"by `logkit print {self.path}`")
        return self.src.reader

    def describe(self, records: bool = True) -> dict:
        self._cannot("display", "its lines are text; `logkit print` reads them and `logkit verify` names "
                                "damaged lines")

    def stats(self) -> dict:
        rd = self._reader()
        n = sum(1 for _ in rd)
        return {"segments": [], "where": f"plain log file {self.path}",
                "counters": {"messages": n, "damaged_lines": int(getattr(rd, "damaged", 0)),
                             "live_bytes": os.path.getsize(self.path)}}

    def verify(self) -> list[Report]:
        rep = Report(self.path, size=_size(self.path))
        rd = self._reader()
        for _ in rd:
            rep.good += 1
        rep.problems.extend(getattr(rd, "problems", []))
        for path, a, b in getattr(rd, "damaged_ranges", []):
            if path == self.path:
                rep.damaged.append((a, b))
            else:                                # a rotated file of the log
                rep.problems.append(f"{path}: offset {a}: {b - a} damaged bytes ({a}..{b})")
        return [rep]

    def salvage(self, grace: float, settle: float, dry_run: bool):
        self._cannot("salvage", "it needs none: its readers skip a damaged line, and `logkit verify` "
                                "names its bytes")


# The inspector of each kind of file sources.resolve() finds ("family" is a
# set of segment files, each inspected on its own).
BY_SOURCE_KIND = {"segment": SegmentInspector, "family": SegmentInspector,
                  "partition": PartitionInspector, "plainfile": PlainFileInspector}


def inspector_of(src, path: str | None = None, ring=None) -> Inspector:
    """The inspector of `path` (default: src.path) of a resolved source."""
    return BY_SOURCE_KIND[src.kind](path or src.path, ring, src)


def inspector_for(path: str, ring=None, *, force: bool = False) -> Inspector:
    """The inspector of the file at `path`, by what its bytes say: a pipe
    journal, a partition, a segment (also one whose magic is damaged, or
    whose header page was lost), and with force=True any other file as a
    segment.  NotASegment (exit 2) for any other file; InvalidArgument or
    LogkitError naming a missing or unreadable one."""
    if os.path.isfile(path) and is_journal(path):
        return JournalInspector(path, ring)
    try:
        kind = insp.file_kind(path)
    except insp.NotASegment:
        if not (force or insp.headerless_segment(path)):
            raise
        kind = "segment"
    return PartitionInspector(path, ring) if kind == "partition" else SegmentInspector(path, ring)
