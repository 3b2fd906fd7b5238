"""Named API keys: long-lived, scoped credentials per application, stored hashed, revocable;
used as `Authorization: Bearer` in place of a JWT (docs/auth.md)."""
