"""What every process of a crash-matrix case does first: scale the code's
timeouts, and (in a census run) count the injection points it reaches.

Timeouts are read from the modules' public constants (any module-level
float or int named *TIMEOUT*, *STALL*, *WAIT*, *GRACE* or *_AGE*), never
typed out here, and every process of one case multiplies them by the same
factor: a stop "longer than every timeout the code uses" is then seconds,
not minutes, and the code's own relations between them are kept.
"""
from __future__ import annotations

import importlib
import json
import os

TIMEOUT_MODULES = ("logkit.family", "logkit.salvager", "logkit.server", "logkit.backends.partition",
                   "logkit.backends.pipe", "logkit.backends.pipejournal", "logkit.backends.family")
_WORDS = ("TIMEOUT", "STALL", "WAIT", "GRACE", "_AGE")
ENV_SCALE = "CRASHMATRIX_TIMEOUT_SCALE"
ENV_CENSUS = "CRASHMATRIX_CENSUS"          # a file: write {point: visits} there at exit


def timeouts() -> dict[str, float]:
    """'module.NAME' -> seconds, of every timeout constant (unscaled)."""
    out = {}
    for mod in TIMEOUT_MODULES:
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        for k, v in vars(m).items():
            if k.isupper() and not k.startswith("_") and any(w in k for w in _WORDS) \
                    and isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 3600:
                out[f"{mod}.{k}"] = float(v)
    return out


_original: dict[str, float] = {}


def scale_timeouts(factor: float) -> dict[str, float]:
    """Multiply every timeout constant by `factor` in this process; returns
    the scaled values."""
    if not _original:
        _original.update(timeouts())
    out = {}
    for full, v in _original.items():
        mod, _, name = full.rpartition(".")
        setattr(importlib.import_module(mod), name, v * factor)
        out[full] = v * factor
    return out


def longest_timeout(factor: float) -> float:
    return max(timeouts().values(), default=0.0) * factor


class Census:
    """Counts every injection point this process reaches, by name, without
    acting on any: each exact name found in the source is armed for a visit
    that never comes (inject counts the visits of armed names), and the
    module function is wrapped to catch names made by f-strings too."""

    def __init__(self, names):
        from logkit import inject
        self.inject = inject
        self.seen: dict[str, int] = {}
        armed = inject.armed()
        for n in names:
            if n and n not in armed:      # a point armed for the case keeps its arming (and is counted)
                inject.arm(n, "raise", 1 << 62)
        real = inject.point
        seen = self.seen

        def point(name):
            seen[name] = seen.get(name, 0) + 1
            real(name)
        inject.point = point

    def counts(self) -> dict[str, int]:
        out = dict(self.seen)
        for n, c in self.inject.hits().items():
            if n != "*":
                out[n] = max(out.get(n, 0), c)
        return out


def start(scale: float | None = None, census_names=None) -> Census | None:
    """Call first in every process of a case."""
    if scale is None:
        scale = float(os.environ.get(ENV_SCALE) or 1.0)
    if scale != 1.0:
        scale_timeouts(scale)
    if census_names is not None:
        return Census(census_names)
    return None


def dump_census(census: Census | None, path: str | None) -> None:
    if census is not None and path:
        with open(path, "w") as f:
            json.dump(census.counts(), f)
