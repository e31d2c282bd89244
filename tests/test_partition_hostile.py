"""Hostile cases for the partition backend (issue 13): stalled and killed
swappers and drainers at named injection points, damaged counters, planted
links.  Each test names the defect it pins down."""
from __future__ import annotations

import os
import time

import pytest

from hostile_partprocs import Child, wait_until
from logkit.backends import partition as part
from logkit.backends.partition import PartitionStorage
from logkit.errors import UnsafePath


# ------------------------------------------------------------ #17 planted links

def test_dangling_symlink_as_partition_path_is_refused_at_once_naming_it(tmp_path):
    path = tmp_path / "app.part"
    os.symlink(tmp_path / "nowhere" / "target", path)
    t0 = time.monotonic()
    with pytest.raises(UnsafePath, match="app.part"):
        PartitionStorage("t", path=str(path), size="8KiB")
    assert time.monotonic() - t0 < 5
    assert sorted(os.listdir(tmp_path)) == ["app.part"]      # no temporary left behind


def test_symlink_to_a_real_partition_is_not_followed(tmp_path):
    real = tmp_path / "real.part"
    PartitionStorage("t", path=str(real), size="8KiB").close()
    link = tmp_path / "link.part"
    os.symlink(real, link)
    with pytest.raises(UnsafePath, match="link.part"):
        PartitionStorage("t", path=str(link), size="8KiB")
