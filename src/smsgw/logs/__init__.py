"""The per-account event log: what the server did about an owner's messages and phones."""
