"""logkit.backends: the built-in storage and transport backends.

Installed as `logkit.backends`.  Each module is one backend, a class
implementing the interface in logkit/registry.py, registered under the
entry-point groups logkit.storage / logkit.transport in setup.py exactly as a
third-party package would register its own.
"""
