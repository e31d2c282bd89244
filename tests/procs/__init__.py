"""Everything the tests run in another process, in one place.

Spawned children (the multiprocessing "spawn" context, through Group):
    common           the machinery (Group, Child: hello handshake, errors
                     reported over the pipe, kills by pid), message contents
                     as a pure function of (writer, counter), and the child
                     targets of the core, family and handler tests.  Re-exported
                     here: `import procs` then `procs.Group()`, `procs.TIMEOUT`.
    part             targets of the partition and pipe backend tests
    plain            targets of the plain-file backend tests
    wake             targets of the wake-up tests

Programs (run by path as `python tests/procs/NAME.py ARGS`; stdlib and logkit only):
    core             one stepwise write (test_core_hostile)
    fuzz             the mutator race's mutators and readers (test_mutator_race)
    hostile_handler  logkit.Handler closed while threads log (test_handler_hostile)
    printing         the command `logkit monitor --call` runs (test_cli_print)
    read             readers against hostile files (test_readers_hostile)

and hostile_part, the parent's side of children that run a short script
with injection points armed (test_partition_hostile).

A spawned child imports its target by module path (procs.part.child_...), so
tests/ must be on sys.path: pytest puts it there (tests/ is not a package),
procs.common puts it on the children's PYTHONPATH, and the scripts that
import procs (soak.py, crashmatrix/) insert it themselves.
"""
from procs.common import *  # noqa: F401,F403  (its __all__)
