"""The dashboard's overview: outcomes per hour and day, the queue, phones, recent failures."""
