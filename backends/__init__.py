"""logkit.backends: the built-in storage and transport backends.

Empty until the backend registry lands; installed as `logkit.backends`.
"""
