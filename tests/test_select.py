"""logkit.select: the option parsers, their error messages, and Selection.apply
checked against an independent, literal oracle of print_sys_log's eleven steps."""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import re
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from logkit.errors import InvalidArgument, LogkitError
from logkit.select import (
    Point,
    Selection,
    SelectionError,
    SeveritySet,
    add_arguments,
    compile_patterns,
    merge_by_time,
    parse_point,
    parse_severities,
    parse_span,
)

NS = 1_000_000_000
UTC = dt.timezone.utc
BASE = int(dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()) * NS
NOW = BASE + 30 * NS


@dataclass(frozen=True)
class Msg:
    sequence: int
    time: int
    severity: int = 20
    text: str = ""
    data: bytes = b""
    data_class: str = ""
    process_id: int = 1
    thread_id: int = 1
    source: int = 0


def msgs(n, start=1, step=NS):
    return [Msg(sequence=start + i, time=BASE + i * step, text=f"m{start + i}") for i in range(n)]


def seqs(ms):
    return [m.sequence for m in ms]


def ns_of(*args, **kw):
    """A namespace as add_arguments would build, unspecified options absent (None)."""
    fields = dict(from_=None, to=None, for_=None, last=None, reverse=False, severity=None,
                  match=None, exclude=None, match_data=None, exclude_data=None)
    fields.update(kw)
    return argparse.Namespace(**fields)


def select(ms, now_ns=NOW, **kw):
    return list(Selection.from_args(ns_of(**kw), now_ns=now_ns).apply(ms))


@pytest.fixture
def local_tz(monkeypatch):
    """Set the process's local time zone (POSIX TZ string); restored afterwards."""
    def set_tz(tz):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
    yield set_tz
    monkeypatch.undo()
    time.tzset()


# --------------------------------------------------------------------------- parse_point


@pytest.mark.parametrize("text, value", [("0", 0), ("42", 42), (" 7 ", 7), ("123456789012", 123456789012)])
def test_parse_point_decimal_integer_is_a_sequence_number(text, value):
    assert parse_point(text) == Point("sequence", value)


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01T10:00Z", dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
    ("2026-12-01T10:00:05Z", dt.datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)),
    ("2026-12-01 10:00:05z", dt.datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)),
    ("2026-12-01T10:00+01:00", dt.datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
    ("2026-12-01T10:00-0230", dt.datetime(2026, 12, 1, 12, 30, tzinfo=UTC)),
    ("2026-12-01T10:00+01", dt.datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
    ("2026-12-01Z", dt.datetime(2026, 12, 1, tzinfo=UTC)),
])
def test_parse_point_iso_8601_with_zone_is_that_instant(text, expected):
    assert parse_point(text) == Point("time", int(expected.timestamp()) * NS)


def test_parse_point_iso_fraction_keeps_nanoseconds():
    whole = int(dt.datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC).timestamp()) * NS
    assert parse_point("2026-12-01 10:00:05.25Z").value == whole + 250_000_000
    assert parse_point("2026-12-01T10:00:05,000000001Z").value == whole + 1
    assert parse_point("2026-12-01T10:00:05.123456789Z").value == whole + 123_456_789


def test_parse_point_naive_iso_is_local_time(local_tz):
    local_tz("UTC-01")  # POSIX sign: one hour east of UTC
    assert parse_point("2026-12-01T10:00").value == int(dt.datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp()) * NS
    assert parse_point("2026-12-01").value == int(dt.datetime(2026, 11, 30, 23, 0, tzinfo=UTC).timestamp()) * NS
    assert parse_point("2026-12-01 10:00:05.25").value == \
        int(dt.datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC).timestamp()) * NS + 250_000_000
    local_tz("UTC+05")
    assert parse_point("2026-12-01T10:00").value == int(dt.datetime(2026, 12, 1, 15, 0, tzinfo=UTC).timestamp()) * NS


@pytest.mark.parametrize("text, delta", [
    ("-2h", -2 * 3600 * NS), ("-90s", -90 * NS), ("-30m", -30 * 60 * NS), ("-1d", -86400 * NS),
    ("-1w", -7 * 86400 * NS), ("-1h30m", -5400 * NS), ("+2h", 2 * 3600 * NS), ("+1d", 86400 * NS),
    ("now-2h", -2 * 3600 * NS), ("now+30m", 30 * 60 * NS), ("NOW - 1h", -3600 * NS),
    ("-1.5h", -5400 * NS), ("-500ms", -NS // 2), ("-3us", -3000), ("-7ns", -7), ("-1m30s", -90 * NS),
    ("now", 0),
])
def test_parse_point_relative_forms_are_offsets_from_now(text, delta):
    assert parse_point(text, now_ns=NOW) == Point("time", NOW + delta)


def test_parse_point_relative_uses_the_clock_without_now_ns():
    before = time.time_ns()
    value = parse_point("-1h").value
    after = time.time_ns()
    assert before - 3600 * NS <= value <= after - 3600 * NS


def test_parse_point_words_are_local_midnights(local_tz):
    local_tz("UTC-01")
    now = int(dt.datetime(2026, 12, 1, 23, 30, tzinfo=UTC).timestamp()) * NS  # 00:30 on Dec 2 local
    midnight = int(dt.datetime(2026, 12, 1, 23, 0, tzinfo=UTC).timestamp()) * NS
    assert parse_point("today", now_ns=now).value == midnight
    assert parse_point("Yesterday", now_ns=now).value == midnight - 86400 * NS
    assert parse_point("tomorrow", now_ns=now).value == midnight + 86400 * NS
    assert parse_point("now", now_ns=now).value == now


def test_parse_point_yesterday_is_a_calendar_day_back_across_dst(local_tz):
    local_tz("EST5EDT,M3.2.0,M11.1.0")  # DST began 2026-03-08 02:00 local
    now = int(dt.datetime(2026, 3, 9, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4))).timestamp()) * NS
    today = parse_point("today", now_ns=now).value
    yesterday = parse_point("yesterday", now_ns=now).value
    assert today == int(dt.datetime(2026, 3, 9, 4, 0, tzinfo=UTC).timestamp()) * NS
    assert yesterday == int(dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC).timestamp()) * NS
    assert today - yesterday == 23 * 3600 * NS


def test_parse_point_keeps_the_users_text_but_compares_by_value():
    p = parse_point(" 12 ", "--to")
    assert p.text == " 12 " and p == Point("sequence", 12) and p.describe() == "' 12 '"


@pytest.mark.parametrize("option", ["--from", "--to"])
@pytest.mark.parametrize("text, says", [
    ("yesterdayy", "not a sequence number or a time (ISO 8601 like 2026-12-01T10:00, "
                   "relative like -2h or -30m, or yesterday/today/now)"),
    ("", "not a sequence number or a time"),
    ("12:00", "not a sequence number or a time"),
    ("-5", "a sequence number is a plain number >= 0"),
    ("+5", "a sequence number is a plain number >= 0"),
    ("-2x", "'2x' is not a duration"),
    ("now-h", "'h' is not a duration"),
    ("2026-13-01", "not a valid date or time (month must be in 1..12)"),
    ("2026-02-30T10:00", "not a valid date or time (day is out of range for month)"),
    ("2026-12-01T25:00", "not a valid date or time (hour must be in 0..23)"),
    ("2026-12-01T10:00+25:00", "time zone offset +25:00 is out of range"),
    ("2026-12-01T10:00:00.1234567891Z", "not a sequence number or a time"),
    ("١٢", "not a sequence number or a time"),  # Arabic-Indic digits are not a sequence number
])
def test_parse_point_errors_name_option_value_and_what_is_accepted(option, text, says):
    with pytest.raises(SelectionError) as e:
        parse_point(text, option, now_ns=NOW)
    assert str(e.value).startswith(f"{option} {text!r}: ")
    assert says in str(e.value)


def test_parse_point_minus_number_error_suggests_a_unit():
    with pytest.raises(SelectionError, match=r"add a unit: -5m, -5h"):
        parse_point("-5")


# --------------------------------------------------------------------------- parse_span


@pytest.mark.parametrize("option", ["--for", "--last"])
@pytest.mark.parametrize("text, point", [
    ("1", Point("count", 1)), ("10", Point("count", 10)), (" 3 ", Point("count", 3)),
    ("2h", Point("duration", 2 * 3600 * NS)), ("30m", Point("duration", 1800 * NS)),
    ("-2h", Point("duration", 2 * 3600 * NS)), ("+2h", Point("duration", 2 * 3600 * NS)),
    ("1d", Point("duration", 86400 * NS)), ("1h30m", Point("duration", 5400 * NS)),
    ("1.5h", Point("duration", 5400 * NS)), ("250ms", Point("duration", NS // 4)),
])
def test_parse_span_counts_and_durations(option, text, point):
    assert parse_span(text, option) == point


@pytest.mark.parametrize("text, value", [
    ("2026-12-01T10:00Z", BASE), ("now", NOW), ("now-2h", NOW - 2 * 3600 * NS),
])
def test_parse_span_last_also_takes_a_time(text, value):
    assert parse_span(text, "--last", now_ns=NOW) == Point("time", value)


def test_parse_span_last_words_are_local_midnights(local_tz):
    local_tz("UTC")
    midnight = int(dt.datetime(2026, 12, 1, tzinfo=UTC).timestamp()) * NS
    assert parse_span("today", "--last", now_ns=NOW) == Point("time", midnight)
    assert parse_span("yesterday", "--last", now_ns=NOW) == Point("time", midnight - 86400 * NS)


@pytest.mark.parametrize("option, text, says", [
    ("--for", "0", "a count of messages must be at least 1"),
    ("--last", "0", "a count of messages must be at least 1"),
    ("--for", "0s", "a duration must be longer than zero"),
    ("--for", "-3", "a count of messages is a plain number like 3, without a sign"),
    ("--last", "+3", "a count of messages is a plain number like 3, without a sign"),
    ("--for", "yesterday", "not a count of messages (like 10) or a duration (like 2h, 30m, 1h30m, 1d)"),
    ("--for", "2026-12-01T10:00Z", "not a count of messages (like 10) or a duration"),
    ("--for", "now-2h", "not a count of messages (like 10) or a duration"),
    ("--for", "2x", "not a count of messages"),
    ("--for", "", "not a count of messages"),
    ("--last", "yesterdayy", "not a count of messages (like 10), a duration (like 2h, 30m, 1d) or a time"),
    ("--last", "nowish", "not a count of messages"),
    ("--last", "now-2x", "'2x' is not a duration"),
    ("--last", "2026-13-01", "month must be in 1..12"),
])
def test_parse_span_errors_name_option_value_and_what_is_accepted(option, text, says):
    with pytest.raises(SelectionError) as e:
        parse_span(text, option, now_ns=NOW)
    assert str(e.value).startswith(f"{option} {text!r}: ")
    assert says in str(e.value)


def test_parse_span_allow_time_overrides_the_option_name():
    assert parse_span("now", "--next", now_ns=NOW, allow_time=True) == Point("time", NOW)
    with pytest.raises(SelectionError, match="--last 'now'"):
        parse_span("now", "--last", now_ns=NOW, allow_time=False)


# --------------------------------------------------------------------------- severities


def test_parse_severities_accepts_numbers_and_ranges_and_merges_them():
    s = parse_severities(["20", "20:29", "-5:0", "-250:-200", "30", "1"])
    assert s.ranges == [(-250, -200), (-5, 1), (20, 30)]
    assert 25 in s and -5 in s and 1 in s and -250 in s and -200 in s
    assert 2 not in s and 31 not in s and -6 not in s and -199 not in s and 251 not in s
    assert "20" not in s


def test_severity_mask_marks_exactly_the_selected_severities():
    s = parse_severities(["-250", "0:2", "250"])
    mask = s.mask()
    assert isinstance(mask, bytes) and len(mask) == 501
    assert {i - 250 for i, b in enumerate(mask) if b} == {-250, 0, 1, 2, 250}
    assert set(mask) == {0, 1}


@given(st.lists(st.tuples(st.integers(-250, 250), st.integers(-250, 250)).map(sorted), min_size=1, max_size=6))
def test_severity_set_contains_mask_and_ranges_agree_with_the_given_ranges(pairs):
    s = parse_severities([f"{lo}:{hi}" for lo, hi in pairs])
    mask = s.mask()
    for v in range(-250, 251):
        want = any(lo <= v <= hi for lo, hi in pairs)
        assert (v in s) == want == bool(mask[v + 250])
    r = s.ranges
    assert all(a[1] + 1 < b[0] for a, b in zip(r, r[1:]))  # sorted, disjoint, not adjacent
    assert s == SeveritySet(pairs)


@pytest.mark.parametrize("text, says", [
    ("300", "severity 300 is outside -250..250"),
    ("-251", "severity -251 is outside -250..250"),
    ("0:251", "severity 251 is outside -250..250"),
    ("29:20", "the range runs backwards (write the lower severity first: 20:29)"),
    ("x", "not a severity or a range of them (a whole number from -250 to 250, or two joined by a colon like 20:29)"),
    ("20:", "not a severity or a range of them"),
    ("20-29", "not a severity or a range of them"),
    ("", "not a severity or a range of them"),
])
def test_parse_severities_errors_name_the_value(text, says):
    with pytest.raises(SelectionError) as e:
        parse_severities(["20", text])
    assert str(e.value).startswith(f"--severity {text!r}: ")
    assert says in str(e.value)


def test_parse_severities_of_nothing_is_an_error():
    with pytest.raises(SelectionError, match="^--severity: no severity given$"):
        parse_severities([])


# --------------------------------------------------------------------------- patterns


def test_slashes_make_a_regex_anything_else_a_plain_substring():
    regex = compile_patterns(["/a.c/"], "--match")
    plain = compile_patterns(["a.c"], "--match")
    assert regex.search("xabcx") and not plain.search("xabcx")
    assert plain.search("xa.cx") and regex.search("xa.cx")
    assert len(regex.regexes) == 1 and regex.plain == []
    assert plain.plain == [b"a.c"] and plain.regexes == ()


def test_pattern_edge_forms():
    p = compile_patterns(["/", "/usr/lib", "//", "/(?i)disk/"], "--exclude")
    assert p.plain_text == ("/", "/usr/lib")
    assert [r.pattern for r in p.regexes] == ["", "(?i)disk"]
    assert compile_patterns(["/(?i)disk/"]).search("DISK full")
    assert not compile_patterns(["disk"]).search("DISK full")  # plain is case-sensitive


def test_patterns_match_if_any_one_matches():
    p = compile_patterns(["zzz", "/^b/", "q"], "--match")
    assert p.search("bat") and p.search("aqa") and p.search("xzzzx")
    assert not p.search("abz")


def test_patterns_plain_are_utf8_bytes():
    assert compile_patterns(["é", "/é/"]).plain == ["é".encode()]


def test_invalid_regex_error_names_option_value_and_re_error():
    with pytest.raises(SelectionError) as e:
        compile_patterns(["ok", "/a(/"], "--match-data")
    msg = str(e.value)
    assert msg.startswith("--match-data '/a(/': not a valid regular expression (")
    assert "missing )" in msg


def test_compile_patterns_of_nothing_is_an_error():
    with pytest.raises(SelectionError, match="^--exclude: no string given$"):
        compile_patterns([], "--exclude")


# --------------------------------------------------------------------------- fuzz: parsers never fail otherwise


@given(st.text(max_size=30))
def test_parsers_return_a_value_or_raise_selection_error_only(text):
    for parse in (lambda: parse_point(text, "--from", now_ns=NOW),
                  lambda: parse_span(text, "--for", now_ns=NOW),
                  lambda: parse_span(text, "--last", now_ns=NOW),
                  lambda: parse_severities([text]),
                  lambda: compile_patterns([text], "--match")):
        try:
            result = parse()
        except SelectionError as e:
            assert repr(text) in str(e)
        else:
            if isinstance(result, Point):
                assert result.kind in ("sequence", "time", "count", "duration")
                assert result.kind not in ("count", "duration") or result.value > 0
                assert result.kind != "sequence" or result.value >= 0


@given(st.from_regex(r"\A[+-]?([1-9]\d{0,2}(\.\d)?(ms|us|ns|w|d|h|m|s)){1,3}\Z"))
def test_every_duration_form_parses_as_a_span_and_as_a_relative_point(text):
    span = parse_span(text)
    assert span.kind == "duration" and span.value > 0
    point = parse_point(text if text[0] in "+-" else "-" + text, now_ns=NOW)
    assert abs(point.value - NOW) == span.value


# --------------------------------------------------------------------------- the error class


def test_selection_error_is_a_logkit_invalid_argument():
    assert issubclass(SelectionError, InvalidArgument)
    assert issubclass(SelectionError, LogkitError)
    assert issubclass(SelectionError, ValueError)


# --------------------------------------------------------------------------- options, from_args, incompatibilities


def parser():
    p = argparse.ArgumentParser(prog="logkit print")
    add_arguments(p)
    return p


def test_add_arguments_defines_exactly_the_selection_options_with_their_dests():
    p = parser()
    dests = {a.dest for a in p._actions} - {"help"}
    assert dests == {"from_", "to", "for_", "last", "reverse", "severity", "match", "exclude",
                     "match_data", "exclude_data", "pid", "logger", "field"}
    assert all(a.help for a in p._actions)
    args = p.parse_args([])
    assert Selection.from_args(args, now_ns=NOW) == Selection(now_ns=NOW)


def test_add_arguments_without_window_leaves_out_the_positional_options():
    p = argparse.ArgumentParser()
    add_arguments(p, window=False)
    assert {a.dest for a in p._actions} - {"help"} == {"severity", "match", "exclude", "match_data",
                                                      "exclude_data", "pid", "logger", "field"}
    args = p.parse_args(["--severity", "20"])
    assert Selection.from_args(args, now_ns=NOW).severities == parse_severities(["20"])


def test_argparse_values_reach_the_selection():
    args = parser().parse_args(["--from=-2h", "--for", "10", "--severity", "20:29", "30",
                                "--severity=-5:0", "--match", "a", "/b+/", "--exclude", "x",
                                "--match-data", "d", "--exclude-data", "e", "--match", "c",
                                "--reverse"])
    s = Selection.from_args(args, now_ns=NOW)
    assert s.from_ == Point("time", NOW - 2 * 3600 * NS)
    assert s.for_ == Point("count", 10)
    assert s.reverse is True
    assert s.severities.ranges == [(-5, 0), (20, 30)]
    assert s.match.sources == ("a", "/b+/", "c")
    assert s.exclude.sources == ("x",)
    assert s.match_data.sources == ("d",) and s.exclude_data.sources == ("e",)
    assert s.needs_data


def test_help_names_the_accepted_forms():
    text = parser().format_help()
    for form in ("2026-12-01T10:00", "-2h", "yesterday", "20:29", "/REGEX/", "--from=-2h", "1h30m"):
        assert form in text


@pytest.mark.parametrize("kw, says", [
    (dict(from_="5", last="10"), "--from '5' and --last '10' cannot be used together"),
    (dict(to="5", for_="2h"), "--to '5' and --for '2h' cannot be used together"),
    (dict(for_="3", last="2h"), "--for '3' and --last '2h' cannot be used together"),
    (dict(from_="9", to="5"), "--from '9' is after --to '5': no message can be selected"),
    (dict(from_="5", to="9", reverse=True), "--from '5' is before --to '9': with --reverse"),
])
def test_incompatible_options_are_refused_naming_both(kw, says):
    with pytest.raises(SelectionError) as e:
        Selection.from_args(ns_of(**kw), now_ns=NOW)
    assert says in str(e.value)


def test_from_args_reports_the_bad_option_value():
    with pytest.raises(SelectionError, match=r"^--to 'yesterdayy': not a sequence number or a time"):
        Selection.from_args(ns_of(to="yesterdayy"), now_ns=NOW)
    with pytest.raises(SelectionError, match=r"^--exclude-data '/\[/': not a valid regular expression"):
        Selection.from_args(ns_of(exclude_data=["/[/"]), now_ns=NOW)


def test_from_args_treats_missing_attributes_as_not_given():
    s = Selection.from_args(argparse.Namespace(match=["x"]), now_ns=NOW)
    assert s.match.sources == ("x",) and s.from_ is None and s.severities is None and not s.reverse


def test_from_args_resolves_every_relative_time_against_one_now():
    s = Selection.from_args(ns_of(from_="-1h", to="now"), now_ns=NOW)
    assert s.to.value - s.from_.value == 3600 * NS and s.to.value == NOW


def test_selection_refuses_points_of_the_wrong_kind():
    with pytest.raises(SelectionError, match="--for"):
        Selection(for_=Point("time", 5))
    with pytest.raises(SelectionError, match="--from"):
        Selection(from_=Point("count", 5))
    with pytest.raises(InvalidArgument):
        Point("moment", 1)


# --------------------------------------------------------------------------- pipeline: explicit cases


def test_to_and_from_by_sequence_are_inclusive():
    assert seqs(select(msgs(20), from_="5", to="8")) == [5, 6, 7, 8]


def test_from_and_to_by_time_are_inclusive():
    ms = msgs(10)
    got = select(ms, from_="2026-12-01T10:00:03Z", to="2026-12-01T10:00:05Z")
    assert seqs(got) == [4, 5, 6]


def test_from_a_time_between_messages_starts_at_the_next_one_or_with_reverse_the_previous():
    ms = msgs(10)  # message k at BASE + (k-1) s
    t = "2026-12-01T10:00:03.5Z"
    assert seqs(select(ms, from_=t, for_="2")) == [5, 6]
    assert seqs(select(ms, from_=t, for_="2", reverse=True)) == [4, 3]


def test_reverse_from_to_and_for_count_from_the_newest():
    ms = msgs(20)
    assert seqs(select(ms, reverse=True, for_="3")) == [20, 19, 18]
    assert seqs(select(ms, reverse=True, from_="10", for_="3")) == [10, 9, 8]
    assert seqs(select(ms, reverse=True, from_="10", to="7")) == [10, 9, 8, 7]
    assert seqs(select(ms, reverse=True, to="17")) == [20, 19, 18, 17]
    assert seqs(select(ms, reverse=True)) == list(range(20, 0, -1))


def test_reverse_last_is_still_the_newest_messages_printed_newest_first():
    ms = msgs(20)
    assert seqs(select(ms, last="3")) == [18, 19, 20]
    assert seqs(select(ms, last="3", reverse=True)) == [20, 19, 18]
    since = "2026-12-01T10:00:16Z"  # messages 17..20
    assert seqs(select(ms, last=since)) == [17, 18, 19, 20]
    assert seqs(select(ms, last=since, reverse=True)) == [20, 19, 18, 17]


def test_last_count_with_match_is_the_last_matching_messages():
    ms = [Msg(sequence=i, time=BASE + i, text="x" if i % 3 == 0 else "y") for i in range(1, 101)]
    got = select(ms, last="10", match=["x"])
    assert seqs(got) == list(range(72, 100, 3))
    assert len(got) == 10 and all(m.text == "x" for m in got)


def test_for_count_counts_printed_not_examined_messages():
    ms = [Msg(sequence=i, time=BASE + i, severity=20 if i % 2 else 30) for i in range(1, 50)]
    assert seqs(select(ms, from_="10", for_="3", severity=["30"])) == [10, 12, 14]


def test_for_duration_starts_at_from_time_or_the_first_examined_message():
    ms = msgs(20)  # 1 s apart
    assert seqs(select(ms, from_="2026-12-01T10:00:02.5Z", for_="2s")) == [4, 5]  # 02.5 .. 04.5
    assert seqs(select(ms, from_="5", for_="2s")) == [5, 6, 7]                    # 04 .. 06, inclusive
    assert seqs(select(ms, for_="1s")) == [1, 2]
    assert seqs(select(ms, from_="5", for_="2s", reverse=True)) == [5, 4, 3]
    assert seqs(select(ms, reverse=True, for_="1s")) == [20, 19]


def test_last_duration_is_since_now_minus_the_duration():
    ms = msgs(40)  # NOW = BASE + 30 s, the time of message 31
    assert seqs(select(ms, last="2s")) == [29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]
    assert seqs(select(ms, last="now-2s", to="31")) == [29, 30, 31]


def test_severity_exclude_match_and_data_steps():
    ms = [Msg(1, BASE, 20, "disk ok", b"dev=sda"), Msg(2, BASE, 30, "disk full", b"dev=sdb"),
          Msg(3, BASE, 30, "net down", b"dev=eth0"), Msg(4, BASE, 31, "disk full", b"dev=sda"),
          Msg(5, BASE, 30, "disk slow", b"\xffdev=sda")]
    assert seqs(select(ms, severity=["30:31"])) == [2, 3, 4, 5]
    assert seqs(select(ms, severity=["30:31"], exclude=["net"])) == [2, 4, 5]
    assert seqs(select(ms, match=["/^disk (full|ok)$/"])) == [1, 2, 4]
    assert seqs(select(ms, match=["disk"], exclude_data=["sdb"])) == [1, 4, 5]
    assert seqs(select(ms, match_data=["sda"], exclude=["ok"])) == [4, 5]
    assert seqs(select(ms, match_data=["/^\\\\xffdev/"])) == [5]  # default expansion: backslashreplace


def test_custom_expand_is_what_the_data_tests_see_and_is_only_called_when_needed():
    ms = msgs(5)
    seen = []

    def expand(m):
        seen.append(m.sequence)
        return f"code={m.sequence * 10}"

    sel = Selection.from_args(ns_of(match_data=["code=30", "/code=50$/"]), now_ns=NOW)
    assert seqs(sel.apply(ms, expand)) == [3, 5]
    assert seen == [1, 2, 3, 4, 5]

    def refuse(m):
        raise AssertionError("expand called without a data test")

    sel = Selection.from_args(ns_of(match=["m2"]), now_ns=NOW)
    assert not sel.needs_data
    assert seqs(sel.apply(ms, refuse)) == [2]


def test_to_and_for_stop_reading_the_input():
    def endless():
        for i in itertools.count(1):
            yield Msg(sequence=i, time=BASE + i * NS, text="x" if i % 2 else "y")

    assert seqs(Selection.from_args(ns_of(to="5"), now_ns=NOW).apply(endless())) == [1, 2, 3, 4, 5]
    assert seqs(Selection.from_args(ns_of(for_="3", match=["x"]), now_ns=NOW).apply(endless())) == [1, 3, 5]
    assert seqs(Selection.from_args(ns_of(from_="10", for_="2s"), now_ns=NOW).apply(endless())) == [10, 11, 12]
    read = []

    def counted():
        for m in msgs(100):
            read.append(m.sequence)
            yield m

    assert seqs(Selection.from_args(ns_of(for_="2"), now_ns=NOW).apply(counted())) == [1, 2]
    assert read == [1, 2]


def test_reversed_input_without_reverse_is_refused():
    with pytest.raises(InvalidArgument, match="messages_are_reversed"):
        Selection(now_ns=NOW).apply([], messages_are_reversed=True)


def test_positional_steps_follow_read_order_not_time_order():
    # Times out of order: --to stops at the first later message, --from starts at the first at-or-after one.
    t = [0, 5, 2, 8, 3, 9]
    ms = [Msg(sequence=i + 1, time=BASE + x * NS) for i, x in enumerate(t)]
    assert seqs(select(ms, to="2026-12-01T10:00:06Z")) == [1, 2, 3]
    assert seqs(select(ms, from_="2026-12-01T10:00:04Z")) == [2, 3, 4, 5, 6]


# --------------------------------------------------------------------------- windows


def test_time_and_sequence_windows():
    s = Selection.from_args(ns_of(from_="2026-12-01T10:00Z", to="2026-12-01T11:00Z"), now_ns=NOW)
    assert s.time_window() == (BASE, BASE + 3600 * NS) and s.sequence_window() == (None, None)
    s = Selection.from_args(ns_of(from_="2026-12-01T10:00Z", for_="1h"), now_ns=NOW)
    assert s.time_window() == (BASE, BASE + 3600 * NS)
    s = Selection.from_args(ns_of(from_="2026-12-01T10:00Z", for_="1h", reverse=True), now_ns=NOW)
    assert s.time_window() == (BASE - 3600 * NS, BASE)
    s = Selection.from_args(ns_of(from_="100", to="200"), now_ns=NOW)
    assert s.sequence_window() == (100, 200) and s.time_window() == (None, None)
    s = Selection.from_args(ns_of(from_="200", to="100", reverse=True), now_ns=NOW)
    assert s.sequence_window() == (100, 200)
    s = Selection.from_args(ns_of(last="2h", to="2026-12-01T10:00:20Z"), now_ns=NOW)
    assert s.time_window() == (NOW - 2 * 3600 * NS, BASE + 20 * NS)
    s = Selection.from_args(ns_of(from_="5", for_="1h"), now_ns=NOW)
    assert s.time_window() == (None, None) and s.sequence_window() == (5, None)
    s = Selection.from_args(ns_of(last="10"), now_ns=NOW)
    assert s.time_window() == (None, None) and s.sequence_window() == (None, None)


# --------------------------------------------------------------------------- the oracle


def oracle_matches(patterns, text):
    for p in patterns:
        if len(p) >= 2 and p.startswith("/") and p.endswith("/"):
            if re.search(p[1:-1], text):
                return True
        elif p in text:
            return True
    return False


def oracle(messages, spec):
    """print_sys_log's steps, literally, over a list in examination order.

    spec holds already-known values: ("sequence"|"time", v) points, ("count"|"duration"
    |"time", v) spans, severity ranges, pattern source strings.
    """
    rev = spec["reverse"]
    todo = list(reversed(messages)) if rev else list(messages)

    def k(m, point):
        return m.sequence if point[0] == "sequence" else m.time

    if spec["to"]:                                           # 1) stop after --to
        out = []
        for m in todo:
            if (k(m, spec["to"]) < spec["to"][1]) if rev else (k(m, spec["to"]) > spec["to"][1]):
                break
            out.append(m)
        todo = out
    if spec["from"]:                                         # 2) start at --from
        i = 0
        while i < len(todo) and ((k(todo[i], spec["from"]) > spec["from"][1]) if rev
                                 else (k(todo[i], spec["from"]) < spec["from"][1])):
            i += 1
        todo = todo[i:]
    if spec["for"] and spec["for"][0] == "duration" and todo:  # 3) --for TIME
        start = spec["from"][1] if spec["from"] and spec["from"][0] == "time" else todo[0].time
        end = start - spec["for"][1] if rev else start + spec["for"][1]
        out = []
        for m in todo:
            if (m.time < end) if rev else (m.time > end):
                break
            out.append(m)
        todo = out
    if spec["last"] and spec["last"][0] in ("time", "duration"):  # 4) --last TIME
        since = spec["last"][1] if spec["last"][0] == "time" else NOW - spec["last"][1]
        if rev:
            out = []
            for m in todo:
                if m.time < since:
                    break
                out.append(m)
            todo = out
        else:
            while todo and todo[0].time < since:
                todo = todo[1:]
    if spec["severity"] is not None:                         # 5)
        todo = [m for m in todo if any(lo <= m.severity <= hi for lo, hi in spec["severity"])]
    if spec["exclude"] is not None:                          # 6)
        todo = [m for m in todo if not oracle_matches(spec["exclude"], m.text)]
    if spec["match"] is not None:                            # 7)
        todo = [m for m in todo if oracle_matches(spec["match"], m.text)]

    def data(m):
        return m.data.decode("utf-8", "backslashreplace")

    if spec["exclude_data"] is not None:                     # 8)
        todo = [m for m in todo if not oracle_matches(spec["exclude_data"], data(m))]
    if spec["match_data"] is not None:                       # 9)
        todo = [m for m in todo if oracle_matches(spec["match_data"], data(m))]
    if spec["for"] and spec["for"][0] == "count":            # 10)
        todo = todo[:spec["for"][1]]
    if spec["last"] and spec["last"][0] == "count":          # 11) the newest N, in output order
        todo = todo[:spec["last"][1]] if rev else todo[-spec["last"][1]:]
    return todo


def iso(t, offset_h=0):
    zone = dt.timezone(dt.timedelta(hours=offset_h))
    stamp = dt.datetime.fromtimestamp(t // NS, tz=zone).strftime("%Y-%m-%dT%H:%M:%S")
    suffix = "Z" if offset_h == 0 else f"{offset_h:+03d}:00"
    return f"{stamp}.{t % NS:09d}{suffix}"


@st.composite
def message_lists(draw, in_time_order=None):
    n = draw(st.integers(0, 25))
    ordered = draw(st.booleans()) if in_time_order is None else in_time_order
    seq = draw(st.integers(0, 5))
    t = BASE + draw(st.integers(0, 3)) * NS
    out = []
    for _ in range(n):
        seq += draw(st.integers(1, 2))
        if ordered:
            t += draw(st.sampled_from([0, NS // 2, NS, NS, 2 * NS]))
        else:
            t = BASE + draw(st.integers(0, 40)) * NS // 2
        out.append(Msg(sequence=seq, time=t, severity=draw(st.sampled_from([-20, 0, 10, 20, 30])),
                       text=draw(st.text(alphabet="abx", max_size=4)),
                       data=draw(st.lists(st.sampled_from([b"a", b"b", b"x", b"\xff"]), max_size=3)
                                 .map(b"".join))))
    return out


PATTERNS = ["a", "b", "ab", "x", "xx", "", "/a.b/", "/^b/", "/x$/", "/[ax]{2}/", "/", "/\\\\xff/"]


@st.composite
def specs(draw, filters=True):
    """(namespace of option strings, the oracle's spec of known values)."""
    def point():
        if draw(st.booleans()):
            n = draw(st.integers(0, 50))
            return str(n), ("sequence", n)
        t = BASE + draw(st.integers(-2, 42)) * NS // 2 + draw(st.sampled_from([0, 0, 1]))
        return iso(t, draw(st.sampled_from([0, 1, -3]))), ("time", t)

    def duration(most=30):
        secs = draw(st.integers(1, most))
        form = draw(st.sampled_from(["{}s", "-{}s", "+{}s", "{}000ms"]))
        return form.format(secs), ("duration", secs * NS)

    def maybe(p=0.4):
        return draw(st.floats(0, 1)) < p

    def count():
        n = draw(st.integers(1, 8))
        return str(n), ("count", n)

    # Mostly combinations print_sys_log allows; "any" may also draw refused ones.
    shape = draw(st.sampled_from(["", "from", "to", "from to", "from for", "from for", "for", "for",
                                  "last", "last", "to last", "to last", "any", "any"]))
    if shape == "any":
        shape = " ".join(name for name in ("from", "to", "for", "last") if maybe(0.5))
    shape = shape.split()
    kw, spec = {}, {"reverse": draw(st.booleans())}
    kw["reverse"] = spec["reverse"]
    for name, key in (("from_", "from"), ("to", "to")):
        kw[name], spec[key] = point() if key in shape else (None, None)
    if "for" in shape:
        kw["for_"], spec["for"] = count() if draw(st.booleans()) else duration(6)
    else:
        kw["for_"], spec["for"] = None, None
    if "last" in shape:
        which = draw(st.sampled_from(["count", "duration", "time"]))
        if which == "count":
            kw["last"], spec["last"] = count()
        elif which == "duration":
            kw["last"], spec["last"] = duration()
        else:
            t = BASE + draw(st.integers(-2, 42)) * NS // 2 + draw(st.sampled_from([0, 1]))
            kw["last"], spec["last"] = iso(t, draw(st.sampled_from([0, 1, -3]))), ("time", t)
    else:
        kw["last"], spec["last"] = None, None
    if filters and maybe():
        pairs = draw(st.lists(st.tuples(st.integers(-25, 35), st.integers(-25, 35)).map(sorted),
                              min_size=1, max_size=3))
        kw["severity"] = [str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in pairs]
        spec["severity"] = pairs
    else:
        kw["severity"] = spec["severity"] = None
    for name in ("match", "exclude", "match_data", "exclude_data"):
        if filters and maybe(0.3):
            kw[name] = spec[name] = draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2))
        else:
            kw[name] = spec[name] = None
    return ns_of(**kw), spec


def expected_refusal(spec):
    """Why print_sys_log's rules (and ours) refuse this combination, or None."""
    f, t = spec["from"], spec["to"]
    if (f and spec["last"]) or (t and spec["for"]) or (spec["for"] and spec["last"]):
        return "cannot be used together"
    if f and t and f[0] == t[0] and ((f[1] < t[1]) if spec["reverse"] else (f[1] > t[1])):
        return "no message can be selected"
    return None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(message_lists(), specs())
def test_apply_agrees_with_the_literal_oracle_in_both_input_orders(messages, spec_pair):
    args, spec = spec_pair
    refusal = expected_refusal(spec)
    if refusal:
        with pytest.raises(SelectionError, match=refusal):
            Selection.from_args(args, now_ns=NOW)
        if refusal == "no message can be selected":
            assert oracle(messages, spec) == []  # the refusal loses nothing
        return
    sel = Selection.from_args(args, now_ns=NOW)
    want = oracle(messages, spec)
    assert list(sel.apply(messages)) == want
    assert list(sel.apply(iter(messages))) == want
    if sel.reverse:
        assert list(sel.apply(reversed(messages), messages_are_reversed=True)) == want


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(message_lists(), specs(filters=False))
def test_positional_steps_agree_with_the_literal_oracle(messages, spec_pair):
    # Without filters every --from/--to/--for/--last boundary shows in the output.
    args, spec = spec_pair
    assume(expected_refusal(spec) is None)
    sel = Selection.from_args(args, now_ns=NOW)
    assert list(sel.apply(messages)) == oracle(messages, spec)
    if sel.reverse:
        assert list(sel.apply(messages[::-1], messages_are_reversed=True)) == oracle(messages, spec)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(message_lists(in_time_order=True), specs())
def test_windows_are_sound_so_a_reader_may_seek(messages, spec_pair):
    args, spec = spec_pair
    assume(expected_refusal(spec) is None)
    sel = Selection.from_args(args, now_ns=NOW)
    want = list(sel.apply(messages))
    tlo, thi = sel.time_window()
    slo, shi = sel.sequence_window()

    def inside(m):
        return ((tlo is None or m.time >= tlo) and (thi is None or m.time <= thi)
                and (slo is None or m.sequence >= slo) and (shi is None or m.sequence <= shi))

    assert all(inside(m) for m in want)
    # What a reader that seeks to the window and stops past it would feed in:
    assert list(sel.apply([m for m in messages if inside(m)])) == want


@settings(max_examples=200)
@given(message_lists(in_time_order=True), specs())
def test_reverse_prints_the_same_filtered_messages_newest_first(messages, spec_pair):
    args, spec = spec_pair
    # Without the positional options, --reverse changes only the order (also for --last).
    args.from_ = args.to = args.for_ = None
    args.reverse = False
    forward = list(Selection.from_args(args, now_ns=NOW).apply(messages))
    args.reverse = True
    backward = list(Selection.from_args(args, now_ns=NOW).apply(messages))
    assert backward == forward[::-1]


# --------------------------------------------------------------------------- merge_by_time


@st.composite
def sources(draw):
    out = []
    for src in range(draw(st.integers(0, 4))):
        t, lst = BASE, []
        for seq in range(draw(st.integers(0, 8))):
            t += draw(st.sampled_from([0, 0, NS]))
            lst.append(Msg(sequence=seq, time=t, source=src))
        out.append(lst)
    return out


@given(sources())
def test_merge_by_time_orders_by_time_then_source_and_keeps_each_sources_order(logs):
    merged = list(merge_by_time(logs))
    concatenated = [m for log in logs for m in log]
    # A stable sort of the sources in order, by (time, source), is the specification.
    assert merged == sorted(concatenated, key=lambda m: (m.time, m.source))
    for src, log in enumerate(logs):
        assert [m for m in merged if m.source == src] == log


@given(sources())
def test_merge_by_time_reversed_is_the_forward_merge_backwards(logs):
    forward = list(merge_by_time(logs))
    assert list(merge_by_time([log[::-1] for log in logs], reverse=True)) == forward[::-1]


def test_merge_by_time_breaks_equal_times_by_source_index_and_is_lazy():
    a = [Msg(1, BASE, source=0), Msg(2, BASE + 1, source=0)]
    b = [Msg(7, BASE, source=1), Msg(8, BASE + 1, source=1)]
    assert [(m.source, m.sequence) for m in merge_by_time([b, a])] == [(1, 7), (0, 1), (1, 8), (0, 2)]

    def endless(src):
        for i in itertools.count():
            yield Msg(i, BASE + i, source=src)

    first = list(itertools.islice(merge_by_time([endless(0), endless(1)]), 4))
    assert [(m.source, m.sequence) for m in first] == [(0, 0), (1, 0), (0, 1), (1, 1)]


def test_merge_then_select_works_across_logs():
    a = [Msg(i, BASE + 2 * i * NS, text="a", source=0) for i in range(1, 6)]
    b = [Msg(i, BASE + (2 * i + 1) * NS, text="b", source=1) for i in range(1, 6)]
    sel = Selection.from_args(ns_of(last="3", match=["a", "b"]), now_ns=NOW)
    got = list(sel.apply(merge_by_time([a, b])))
    assert [(m.source, m.sequence) for m in got] == [(1, 4), (0, 5), (1, 5)]


def test_who_logged_is_step_5a_of_the_reference_selection():
    """--pid, --logger and --field (record payloads, docs/format.md) in apply()."""
    from logkit import RecordInfo

    class M:
        def __init__(self, seq, logger, pid, fields):
            self.sequence, self.time, self.severity, self.text = seq, NOW + seq, 20, f"m{seq}"
            self.data, self.data_class, self.process_id = b"", "", pid
            self.record = RecordInfo(logger, "", "", 0, "", fields, None)

    msgs = [M(1, "web.api", 10, {"user": "alice"}), M(2, "web.db", 11, {"user": "bob", "n": 3}),
            M(3, "", 10, {})]
    args = parser().parse_args(["--logger", "web.*", "!web.db", "--pid", "10"])
    assert [m.sequence for m in Selection.from_args(args, now_ns=NOW).apply(msgs)] == [1]
    args = parser().parse_args(["--field", "n=3", "--field", "user~^b"])
    assert [m.sequence for m in Selection.from_args(args, now_ns=NOW).apply(msgs)] == [2]
    args = parser().parse_args(["--logger", "*", "--for", "1", "--reverse"])
    assert [m.sequence for m in Selection.from_args(args, now_ns=NOW).apply(msgs)] == [3]
