"""JWT access and refresh tokens for the 3rd-party API: issue, refresh, revoke, verify."""
