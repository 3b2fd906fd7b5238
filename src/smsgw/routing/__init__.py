"""Which phone takes which message: claims within a cap, release of stale claims, expiry."""
