"""The fault-injection mechanism itself (logkit.inject): a point armed in a
child's environment stops or kills it exactly there, and nowhere else."""
import os
import signal
import subprocess
import sys

import pytest

from logkit import inject

CHILD = """
import sys
from logkit import inject
for i in range(5):
    inject.point("demo.step")
    print(i, flush=True)
inject.point("demo.other")
print("end", flush=True)
"""


def run_child(tmp_path, spec):
    notify = tmp_path / "notify"
    env = dict(os.environ, LOGKIT_INJECT=spec, LOGKIT_INJECT_NOTIFY=str(notify))
    return notify, subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, text=True)


def test_kill_at_third_visit_of_a_point_stops_output_there(tmp_path):
    notify, p = run_child(tmp_path, "demo.step=kill@3")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert out.split() == ["0", "1"]
    assert notify.read_text().split()[0] == "demo.step"


def test_stop_then_continue_resumes_after_the_point(tmp_path):
    notify, p = run_child(tmp_path, "demo.other=stop")
    name, pid = inject.wait_for_point(str(notify), "demo.other", proc=p)
    assert (name, pid) == ("demo.other", p.pid)
    os.kill(p.pid, signal.SIGCONT)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and out.split()[-1] == "end"


def test_star_arms_the_nth_point_whatever_its_name(tmp_path):
    notify, p = run_child(tmp_path, "*=exit@6")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 86 and out.split() == ["0", "1", "2", "3", "4"]
    assert notify.read_text().split()[0] == "demo.other"


def test_raise_in_process_and_disarm():
    inject.arm("unit.step", "raise", hit=2)
    try:
        inject.point("unit.step")
        with pytest.raises(inject.Injected):
            inject.point("unit.step")
    finally:
        inject.disarm()
    inject.point("unit.step")
    assert inject.armed() == {}


def test_bad_spec_is_refused_with_its_item():
    with pytest.raises(ValueError, match="bad item 'x=explode'"):
        inject.parse_spec("x=explode")
