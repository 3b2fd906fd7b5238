"""Background work: presence flushes, expiry, release of stale claims, waking phones."""
