"""bench/smpp: submit_sm a second through one carrier link (see __main__.py)."""
