"""Opt-outs: the numbers an account no longer sends to (a recipient's STOP, or added by hand)."""
