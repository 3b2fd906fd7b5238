"""Messages: enqueue, list, read and cancel; recipients and state history."""
