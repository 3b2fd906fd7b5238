"""bench.ingest: POST /messages through a real server on loopback, against a no-storage baseline.

Run it with `make bench` (or `.venv/bin/python -m bench.ingest --help`); the figures and how to
read them are in docs/performance.md.
"""
