"""In-process events: what phones are told over Server-Sent Events."""
