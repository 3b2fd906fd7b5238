"""bench/data: the API and a phone's pull on a database of a million messages (issue 17)."""
