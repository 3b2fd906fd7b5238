"""Carrier links: senders beside phones (SMPP now; docs/links.md)."""
