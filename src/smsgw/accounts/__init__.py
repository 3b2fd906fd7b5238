"""User accounts, password hashing and the verified-credential cache."""
