"""The conformance suite run on the third-party backend, as its own package's tests would."""
from logkit import registry
from logkit.testing import StorageBackendTests


class TestSqliteConformance(StorageBackendTests):
    def make_storage(self, tmp_path, **overrides):
        cls = registry.load("storage", "sqlite")          # found by its entry point
        return cls("test", path=str(tmp_path / "log.db"), **overrides)
