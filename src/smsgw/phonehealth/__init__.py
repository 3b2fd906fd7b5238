"""The latest health each phone reported with its `system:ping` webhook."""
