"""Phones end to end (API to Delivered through N simulated phones) and idle SSE capacity."""
