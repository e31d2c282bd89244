"""Constant time of the hand-written cipher (pyx/include/lk_seal.h): no
branch, conditional move or memory address computed from the key, the
Poly1305 state or the message.  The methods and their limits are in
tests/cipher_ct_check.py and docs/security.md; this is the part CI runs (the
build's optimisation level and -O3, every header configuration for the
static check; memcheck on the built configuration and the 32-bit-limb
Poly1305).  The whole matrix and the dudect timing test run by hand:
`.venv/bin/python tests/cipher_ct_check.py [dudect SECONDS]`."""
from __future__ import annotations

import os
import platform
import sys

import pytest

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import cipher_ct_check as ct  # noqa: E402

X86_64 = platform.machine() in ("x86_64", "AMD64")
needs_x86_64 = pytest.mark.skipif(not X86_64, reason="the static check reads x86-64 assembly; "
                                  f"this machine is {platform.machine()} (memcheck still runs)")
needs_cc = pytest.mark.skipif(ct.compiler() is None, reason="needs the C compiler that builds logkit")
# valgrind is on every machine kind the project runs on (CI included); a
# machine without it skips with this reason, and the static check still runs.
needs_valgrind = pytest.mark.skipif(ct.valgrind() is None,
                                    reason="needs valgrind and its headers (apt-get install valgrind)")


def _config_id(defines):
    return " ".join(d.removeprefix("-DLK_SEAL_") for d in defines) or "built"


# ------------------------------------------------------------------ static

@needs_cc
@needs_x86_64
@pytest.mark.parametrize("opt", [None, "-O3"], ids=["build-O", "O3"])
@pytest.mark.parametrize("defines", ct.CONFIGS, ids=_config_id)
def test_poly1305_and_the_tag_compare_compile_to_code_with_no_secret_dependent_branch_or_table_lookup(
        opt, defines):
    report = ct.static_report(opt, defines)
    leaks = {p: f for p, f in report.items() if p in ct.PROBES and f}
    assert leaks == {}, "\n".join(f"{p}: {x}" for p, f in leaks.items() for x in f)


@needs_cc
@needs_x86_64
def test_the_static_check_finds_an_early_exit_compare_a_table_lookup_and_a_division():
    report = ct.static_report()
    kinds = {c: {x.split(":")[0] for x in report[c]} for c in ct.CONTROLS}
    assert "conditional branch" in kinds["lkct_control_early_exit_compare"]
    assert kinds["lkct_control_table_lookup"] & {"address of a static table",
                                                 "indexed memory operand (table lookup shape)",
                                                 "static table addressed through a register"}
    assert "division (operand-dependent latency)" in kinds["lkct_control_division"]
    # and in non-PIC code, where a table is addressed as table(%reg)
    report = ct.static_report(None, ["-fno-PIC", "-fno-pie"])
    assert any(x.startswith("static table addressed through a register")
               for x in report["lkct_control_table_lookup"])


@needs_cc
@needs_x86_64
def test_the_static_check_finds_a_branch_put_into_poly1305s_final_reduction(tmp_path):
    report = ct.static_report(None, [], include=ct.write_mutant_header(str(tmp_path)))
    assert any(x.startswith("conditional") for x in report["lkct_poly1305_final_whole"]), report


# ---------------------------------------------------------------- memcheck

@needs_cc
@needs_valgrind
def test_under_memcheck_nothing_but_opens_tag_verdict_depends_on_key_nonce_aad_or_text():
    sealing, opening = "seal+poly1305+chacha20+seal_message", "open+open_message"
    report = ct.memcheck_report([sealing, opening, "control"])
    control = report.pop("control")
    # The method sees leaks: the control's early-exit compare and table lookup.
    assert {kind for kind, _ in control} == set(ct.GRIND_ERRORS), control
    # Open must branch on whether the tag matched (refusing is public), and
    # memcheck must see that branch, or it is not looking.
    allowed = f"lk_aead_open_v (lk_seal.h:{ct.open_tag_branch_line()})"
    assert {frame for _, frame in report[opening]} == {allowed}, report[opening]
    assert ct.memcheck_unexpected(report) == {sealing: [], opening: []}


@needs_cc
@needs_valgrind
def test_under_memcheck_the_32_bit_limb_poly1305_has_no_secret_dependent_branch_or_address():
    report = ct.memcheck_report(["poly1305+seal"], None, ["-DLK_SEAL_POLY32"])
    assert report == {"poly1305+seal": []}


@needs_cc
@needs_valgrind
def test_memcheck_finds_a_branch_put_into_poly1305s_final_reduction(tmp_path):
    report = ct.memcheck_report(["poly1305"], include=ct.write_mutant_header(str(tmp_path)))
    assert [kind for kind, frame in report["poly1305"] if "lk_poly1305_final" in frame] == \
        ["Conditional jump or move depends on uninitialised value"], report


# ------------------------------------------------------------------ dudect

@pytest.mark.skipif(os.environ.get("LOGKIT_DUDECT") is None,
                    reason="a timing test: on a shared machine its noise proves nothing, so it "
                           "runs by hand (LOGKIT_DUDECT=SECONDS, or tests/cipher_ct_check.py dudect)")
def test_dudect_finds_no_timing_difference_in_poly1305_or_open_and_finds_the_control():
    results = ct.dudect(float(os.environ["LOGKIT_DUDECT"] or 30))
    *cipher, control = results
    assert all(abs(t) < 10 for _, _, t in cipher), cipher
    assert abs(control[2]) > 10, control
