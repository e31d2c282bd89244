from logkit.testing import StorageBackendTests
from logkit.backends.family import FamilyStorage
class TestFamilyConformance(StorageBackendTests):
    too_big = 70000
    def make_storage(self, tmp_path, **o):
        return FamilyStorage("test", directory=str(tmp_path), segment_size="64KiB", **o)
