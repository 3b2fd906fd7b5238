"""Conversations: a thread per phone number of what was sent to it and what it sent; CSV exports."""
