"""`logkit backends`: every storage and transport backend installed, and where it comes from."""
from __future__ import annotations

import sys

from logkit import registry
from logkit.config import describe_options


def add_parser(sub) -> None:
    p = sub.add_parser("backends", help="list the storage and transport backends installed",
                       description="List every backend registered under the entry-point groups "
                                   "logkit.storage and logkit.transport, with the package that "
                                   "declares it.  -v also lists each backend's options.")
    p.add_argument("-v", "--verbose", action="store_true", help="list each backend's options too")
    p.set_defaults(run=run)


def run(args) -> int:
    status = 0
    for kind in ("storage", "transport"):
        print(f"{kind} backends (entry-point group {registry.GROUPS[kind]}):")
        for b in registry.available(kind):
            try:
                cls = registry.load(kind, b.name)
                doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip()
                summary = " ".join(doc.split("\n\n", 1)[0].split())      # its first paragraph
                print(f"  {b.name:<12} {b.value:<45} from {b.distribution}")
                if summary:
                    print(f"  {'':<12} {summary}")
                if args.verbose:
                    for line in describe_options(cls):
                        print(f"  {'':<14}{line}")
            except registry.BackendNotFound as e:
                status = 1
                print(f"  {b.name:<12} {b.value:<45} from {b.distribution}  BROKEN: {e}")
    return status
