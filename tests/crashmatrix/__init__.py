"""The crash matrix: kill or stop a process of a real multi-process scenario
at every named injection point (logkit.inject) and at random instants, then
check that nothing acknowledged is lost or duplicated, readers do not crash,
the next writer or server recovers unaided and the counters balance.

points.py finds the points in the source; runtime.py is what every process
of a case runs first (scaled timeouts, the census of points reached);
children.py the writer processes; serve.py `logkit server` prepared the same
way; readcheck.py the reader process; harness.py runs one case and checks
it.  tests/test_crash_matrix.py runs a bounded sample in CI; tests/soak.py
runs thousands of cases and prints a table by injection point.
"""
