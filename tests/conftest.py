"""Shared fixtures for the logkit test suite (kept deliberately small)."""
import pytest

from logkit import Segment

# tests/thirdparty holds packages that tests install; their own test files run
# (in a subprocess, with the package installed) from tests/test_registry.py.
collect_ignore = ["thirdparty"]


@pytest.fixture
def segment_path(tmp_path):
    """Path of a segment file that does not exist yet."""
    return tmp_path / "test.seg"


@pytest.fixture
def segment(segment_path):
    """A fresh, writable 64 KiB segment file, closed after the test."""
    seg = Segment.create(segment_path, size=1 << 16, family="test")
    yield seg
    seg.close()
