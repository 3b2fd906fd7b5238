"""Health probes: database round trip, worker loop, free disk space (upstream body shape)."""
