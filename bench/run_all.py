"""`make bench`: run every bench/bench_*.py in one go, each printing its table."""
import glob
import os
import runpy
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
for path in sorted(glob.glob(os.path.join(here, "bench_*.py"))):
    runpy.run_path(path, run_name="__main__")
