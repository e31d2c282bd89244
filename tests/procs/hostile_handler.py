"""Child programs for tests/test_handler_hostile.py: a logkit.Handler closed
while other threads log (issue #13, defect 14).

Run as ``python tests/procs/hostile_handler.py SCENARIO DIR [ROUNDS]``; the process
writes DIR/result.json (what each thread had finished logging before the
handler was closed, per round) and DIR/errors.txt (one line per error the
handler reported through handleError: "<type>: <message>").  The parent checks
the exit status (a crash is a signal), reads the families back and compares.

Scenarios:

* ``close``: each round, THREADS threads log into a fresh handler; once each
  has finished MIN_EACH records, the main thread closes the handler while
  they keep logging.
* ``dictconfig``: the same, the handler made and replaced by
  logging.config.dictConfig (which closes the replaced handler exactly so).
* ``shutdown``: daemon threads keep logging while the interpreter exits
  (logging.shutdown closes the handler from the atexit hook).
* ``paused``: one thread is stopped inside the sink's slow path (injection
  point ``handler.sink.slow``, action ``wait``), the handler is closed and
  its objects' memory churned, then the thread continues.

Message texts are "t<thread> m<n>", n counting from 0 per thread and round.
"""
from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
import threading

THREADS = 8
MIN_EACH = 200          # records each thread finishes before the close
TIMEOUT = 60.0


class _Errors:
    """handleError replacement: one line per reported error, appended to a file."""

    def __init__(self, path):
        self.path = path

    def __call__(self, record):
        exc = sys.exc_info()[1]
        line = f"{type(exc).__name__}: {exc}".replace("\n", " ") + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8", "backslashreplace"))
        finally:
            os.close(fd)


def _handler_options(directory, family):
    return {"storage": "family", "directory": directory, "family": family, "segment_size": "8KiB"}


def _save(out, results):
    tmp = os.path.join(out, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f)
    os.replace(tmp, os.path.join(out, "result.json"))


class _Loggers:
    """THREADS threads logging into `logger` until `stop` is set; finished[k]
    is how many records thread k has finished (logger.info returned)."""

    def __init__(self, logger, daemon=False):
        self.logger = logger
        self.finished = [0] * THREADS
        self.stop = threading.Event()
        self._enough = threading.Semaphore(0)
        self.threads = [threading.Thread(target=self._work, args=(k,), daemon=daemon)
                        for k in range(THREADS)]
        for t in self.threads:
            t.start()

    def _work(self, k):
        n = 0
        info = self.logger.info
        while not self.stop.is_set():
            info("t%d m%d", k, n)
            n += 1
            self.finished[k] = n
            if n == MIN_EACH:
                self._enough.release()

    def wait_enough(self):
        for _ in self.threads:
            if not self._enough.acquire(timeout=TIMEOUT):
                raise RuntimeError("the logging threads did not get going")

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(TIMEOUT)
            if t.is_alive():
                raise RuntimeError("a logging thread did not stop")


def _logger(name, handler=None):
    lg = logging.getLogger(name)
    lg.propagate = False
    lg.setLevel(logging.DEBUG)
    if handler is not None:
        lg.handlers[:] = [handler]
    return lg


def scenario_close(out, rounds):
    import logkit
    errors = _Errors(os.path.join(out, "errors.txt"))
    results = []
    for r in range(rounds):
        family = f"close{r}"
        h = logkit.Handler(**_handler_options(out, family))
        h.handleError = errors
        lk = _Loggers(_logger(f"close{r}", h))
        lk.wait_enough()
        results.append({"family": family, "finished": list(lk.finished)})
        _save(out, results)
        h.close()
        lk.join()
    return 0


def _dict_config(out, family):
    return {
        "version": 1, "disable_existing_loggers": False,
        "handlers": {"lk": {"()": "logkit.Handler", **_handler_options(out, family)}},
        "loggers": {"dc": {"handlers": ["lk"], "level": "DEBUG", "propagate": False}},
    }


def scenario_dictconfig(out, rounds):
    errors = _Errors(os.path.join(out, "errors.txt"))
    results = []
    logging.config.dictConfig(_dict_config(out, "dict0"))
    lg = logging.getLogger("dc")
    lg.handlers[0].handleError = errors
    for r in range(rounds):
        lk = _Loggers(lg)
        lk.wait_enough()
        results.append({"family": f"dict{r}", "finished": list(lk.finished)})
        _save(out, results)
        # Replaces (and closes) dict{r}'s handler while the threads log.
        logging.config.dictConfig(_dict_config(out, f"dict{r + 1}"))
        lg.handlers[0].handleError = errors
        lk.join()
    logging.shutdown()
    return 0


def scenario_shutdown(out, rounds):
    import logkit
    errors = _Errors(os.path.join(out, "errors.txt"))
    h = logkit.Handler(**_handler_options(out, "shutdown"))
    h.handleError = errors
    lk = _Loggers(_logger("shutdown", h), daemon=True)
    lk.wait_enough()
    _save(out, [{"family": "shutdown", "finished": list(lk.finished)}])
    return 0      # logging.shutdown (atexit) closes h while the daemon threads log


class _Canary:
    """What a freed sink's memory is refilled with: if the paused emit used
    the sink after it was freed, it calls these (and the test sees it)."""

    def __init__(self, path):
        self.path = path

    def write(self, *args):
        with open(self.path, "a") as f:
            f.write("freed sink used\n")

    @property
    def _seg(self):
        return None


def scenario_paused(out, rounds):
    import logkit
    from logkit import inject
    notify = os.path.join(out, "notify")
    errors = _Errors(os.path.join(out, "errors.txt"))
    inject.arm("handler.sink.slow", "wait", 1, notify=notify)
    h = logkit.Handler(**_handler_options(out, "paused"))
    h.handleError = errors
    lg = _logger("paused", h)
    finished = [0]
    stop = threading.Event()

    def work():
        n = 0
        while not stop.is_set():
            lg.info("t%d m%d", 0, n)
            n += 1
            finished[0] = n
    t = threading.Thread(target=work)
    t.start()
    inject.wait_for_point(notify, "handler.sink.slow", TIMEOUT)   # the segment filled: in _slow now
    _save(out, [{"family": "paused", "finished": [finished[0]]}])
    stop.set()
    h.close()
    # Refill freed small blocks: a sink freed under the paused emit comes back
    # as one of these tuples, and its `writer` field as a _Canary.
    canary = _Canary(os.path.join(out, "canary.txt"))
    junk = [(canary, canary, canary) for _ in range(20000)]
    with open(notify + ".go", "w"):
        pass
    t.join(TIMEOUT)
    if t.is_alive():
        raise RuntimeError("the paused thread did not finish")
    del junk
    return 0


def main(argv):
    scenario, out = argv[1], argv[2]
    rounds = int(argv[3]) if len(argv) > 3 else 1
    return globals()[f"scenario_{scenario}"](out, rounds)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
