# The logging handler's hot path (filled in with logkit.handler).
