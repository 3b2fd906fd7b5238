"""Phones (and later other senders) that take messages from the queue."""
