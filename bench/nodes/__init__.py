"""bench.nodes: several `smsgw serve` nodes on one PostgreSQL database (issue 16): ingest as
nodes are added, wakes across nodes, and PostgreSQL's ingest against SQLite's on one node.

Run it with `.venv/bin/python -m bench.nodes` (`--help` lists the options); the figures and how
to read them are in docs/performance.md.
"""
