"""Phone numbers: parsed with libphonenumber and stored in E.164."""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from smsgw.domain.errors import InvalidInput

_SMS_CAPABLE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalize(raw: str, default_region: str | None, field: str) -> str:
    """Return `raw` in E.164 or raise InvalidInput naming `field`.

    Numbers without a leading `+` are read in `default_region`; when that is unset they are
    refused, since guessing a country sends an SMS to the wrong person.
    """
    text = raw.strip()
    if not text.startswith("+") and default_region is None:
        raise InvalidInput(
            f"{field}: {raw!r} has no country code; write it as +<country code><number> "
            "or set SMSGW_DEFAULT_REGION on the server"
        )
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(f"{field}: {raw!r} is not a phone number ({exc._msg})") from None
    kind = phonenumbers.number_type(parsed)  # UNKNOWN exactly when not a valid number
    if kind == PhoneNumberType.UNKNOWN:
        raise InvalidInput(f"{field}: {raw!r} is not a valid phone number")
    if kind not in _SMS_CAPABLE:
        raise InvalidInput(f"{field}: {raw!r} is not a mobile phone number")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def normalize_all(raws: list[str], default_region: str | None, validate: bool) -> list[str]:
    """Normalise every number (unless `validate` is false) and refuse duplicates."""
    numbers = [
        normalize(raw, default_region, f"phoneNumbers[{i}]") if validate else raw.strip()
        for i, raw in enumerate(raws)
    ]
    seen: dict[str, int] = {}
    for i, number in enumerate(numbers):
        if number in seen:
            raise InvalidInput(
                f"phoneNumbers: phone numbers must be unique; phoneNumbers[{seen[number]}] "
                f"and phoneNumbers[{i}] are both {number}"
            )
        seen[number] = i
    return numbers


def match_key(raw: str, default_region: str | None) -> str:
    """The form a number is compared in (opt-outs): E.164 whenever it parses as a phone
    number (valid or not, mobile or not; without `+` read in `default_region`), else the text
    as given, trimmed. A number `normalize` accepts keeps its E.164 form, so "+1 202 555
    0100" and, with region US, "1 202 555 0100" or "(202) 555-0100" are one number."""
    text = raw.strip()
    if not text.startswith("+") and default_region is None:
        return text
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return text
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
