"""Stop words: the texts with which a recipient opts out of an account's messages, or back in.

A received SMS is a keyword when its whole text, trimmed, without trailing punctuation and
with its spaces collapsed, is one, in any case: "STOP", "stop", " Stop. " and "STOP!" are;
"please stop" and "STOP sending" are not (carriers' rules read the whole message too).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

#: Always stop words (`SMSGW_OPT_OUT_WORDS` adds more).
STOP_WORDS = ("STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
#: Opt back in.
START_WORDS = ("START", "UNSTOP")
#: Longest extra stop word taken from the settings.
MAX_WORD = 64


def canonical(text: str) -> str:
    """The form texts are compared in: trimmed, trailing punctuation dropped, runs of white
    space made one space, case folded."""
    words = " ".join(text.split())
    end = len(words)
    while end and (unicodedata.category(words[end - 1]).startswith("P") or words[end - 1] == " "):
        end -= 1
    return words[:end].casefold()


def parse_extra(value: str) -> tuple[str, ...]:
    """The extra stop words of a comma-separated list, canonical; ValueError naming a word
    that is too long, has nothing but punctuation, or is an opt-in word."""
    found: list[str] = []
    for given in value.split(","):
        if not given.strip():
            continue
        word = canonical(given)
        if not word:
            raise ValueError(f"{given.strip()!r} is not a word")
        if len(word) > MAX_WORD:
            raise ValueError(f"{given.strip()!r} is longer than {MAX_WORD} characters")
        if word in {canonical(w) for w in START_WORDS}:
            raise ValueError(f"{given.strip()!r} is an opt-in word ({', '.join(START_WORDS)})")
        found.append(word)
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class Keywords:
    """The stop and start words in force (canonical)."""

    stop: frozenset[str]
    start: frozenset[str]

    @classmethod
    def with_extra(cls, extra: str) -> Keywords:
        """The built-in words and the extra stop words of `SMSGW_OPT_OUT_WORDS`."""
        stop = {canonical(w) for w in STOP_WORDS} | set(parse_extra(extra))
        return cls(frozenset(stop), frozenset(canonical(w) for w in START_WORDS))

    def meaning(self, text: str | None) -> bool | None:
        """True for a stop word (opt out), False for a start word (opt in), else None."""
        if text is None or len(text) > 4 * MAX_WORD:
            return None
        word = canonical(text)
        if word in self.stop:
            return True
        return False if word in self.start else None
