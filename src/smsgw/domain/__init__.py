"""Pure-Python domain rules: no web framework, no database."""
