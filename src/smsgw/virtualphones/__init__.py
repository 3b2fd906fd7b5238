"""Virtual phones: phones that live inside smsgw, for development (docs/phones.md)."""
