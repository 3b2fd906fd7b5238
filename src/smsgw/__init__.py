"""smsgw: a self-hosted SMS gateway server."""

__version__ = "0.1.0"
