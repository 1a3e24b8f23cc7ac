"""Destination numbers: parse, normalise to E.164, and refuse the ones we must never dial.

The abuse guards of DESIGN.md §7 live here: emergency numbers, short codes, premium-rate
numbers and countries a tenant may not call are refused before a task exists. Imports only
the standard library and ``phonenumbers`` so every layer (intake, API, CallActor) can use it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final, Literal

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType, ValidationResult, shortnumberinfo
from phonenumbers import timezone as pn_timezone

RefusalCode = Literal[
    "invalid", "emergency", "short_code", "premium_rate", "country_not_allowed", "not_dialable"
]

MAX_INPUT_CHARS: Final = 64
"""Longest raw input we try to parse; the longest formatted real number is ~30 characters."""

SHORT_CODE_MAX_DIGITS: Final = 6
"""A number this short is a short code, not a typo of a full number (plans use 3–6 digits)."""

ANY_COUNTRY: Final = "*"
"""In ``allowed_countries``, allows every country."""

_NON_GEOGRAPHIC_REGION: Final = "001"
_UNKNOWN_ZONE: Final = "Etc/Unknown"

# Types a voice agent cannot hold a conversation with.
_NOT_DIALABLE_TYPES: Final = frozenset({PhoneNumberType.PAGER, PhoneNumberType.VOICEMAIL})


class NumberRefusedError(ValueError):
    """A destination number we will not dial; ``code`` says why, the message says it to a human."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(message)
        self.code: RefusalCode = code


def normalize_destination(
    raw: str,
    *,
    allowed_countries: Collection[str] | None = None,
    default_region: str | None = None,
) -> str:
    """Return ``raw`` as E.164, or raise :class:`NumberRefusedError` if we must not dial it.

    ``allowed_countries`` holds ISO 3166 alpha-2 codes; ``None`` or a collection containing
    ``"*"`` allows every country, an empty collection allows none. ``default_region`` lets a
    number without ``+`` and country code parse as a national number of that region.
    """
    number = _parse(raw, default_region)
    regions = _regions_of_country_code(number, default_region)
    _refuse_emergency_and_short(number, regions)
    if not phonenumbers.is_valid_number(number):
        raise _invalid_reason(number)
    _refuse_by_type(number)
    _refuse_country(number, allowed_countries)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def region_of(e164: str) -> str | None:
    """ISO alpha-2 region of an E.164 number, or ``None`` when it has no single region."""
    region = phonenumbers.region_code_for_number(_parse_e164(e164))
    if not region or region == _NON_GEOGRAPHIC_REGION:
        return None
    return str(region)


def zones_for_number(e164: str) -> tuple[str, ...]:
    """IANA time zones ``phonenumbers`` maps an E.164 number to (sorted, no ``Etc/Unknown``)."""
    zones = pn_timezone.time_zones_for_number(_parse_e164(e164))
    return tuple(sorted({str(z) for z in zones if z != _UNKNOWN_ZONE}))


# -- parsing ---------------------------------------------------------------------------------


def _parse(raw: str, default_region: str | None) -> PhoneNumber:
    if not isinstance(raw, str):
        raise NumberRefusedError("invalid", "a phone number must be text")
    text = raw.strip()
    if not text:
        raise NumberRefusedError("invalid", "no phone number given")
    # Checked before parsing so a huge payload costs nothing and the error is clear.
    if len(text) > MAX_INPUT_CHARS:
        raise NumberRefusedError(
            "invalid", f"too long to be a phone number (over {MAX_INPUT_CHARS} characters)"
        )
    region = default_region.strip().upper() if default_region else None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise NumberRefusedError("invalid", _parse_error_message(exc, region)) from exc
    if number.extension:
        # Dropping the extension would silently lose it; the agent can dial it with DTMF instead.
        raise NumberRefusedError(
            "invalid",
            "phone extensions are not supported in the number; give the extension in the "
            "task's context so the agent can dial it",
        )
    return number


def _parse_error_message(exc: phonenumbers.NumberParseException, region: str | None) -> str:
    kind = exc.error_type
    if kind == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
        if region is None:
            return "not an international number: start it with + and the country code"
        return f"unknown country code (default region {region!r})"
    if kind == phonenumbers.NumberParseException.TOO_SHORT_NSN:
        return "too short to be a phone number"
    if kind == phonenumbers.NumberParseException.TOO_LONG:
        return "too long to be a phone number"
    return "not a phone number"


def _parse_e164(e164: str) -> PhoneNumber:
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException as exc:
        raise NumberRefusedError("invalid", "not an E.164 phone number") from exc


def _regions_of_country_code(number: PhoneNumber, default_region: str | None) -> tuple[str, ...]:
    # An invalid number (911, 112, 999) has no region of its own, so emergency and short-code
    # rules are checked against every region sharing its country code (+1 covers 25).
    regions = [str(r) for r in phonenumbers.region_codes_for_country_code(number.country_code or 0)]
    if default_region:
        regions.append(default_region.strip().upper())
    return tuple(dict.fromkeys(r for r in regions if r != _NON_GEOGRAPHIC_REGION))


# -- the guards ------------------------------------------------------------------------------


def _refuse_emergency_and_short(number: PhoneNumber, regions: Iterable[str]) -> None:
    nsn = phonenumbers.national_significant_number(number)
    regions = tuple(regions)
    valid = phonenumbers.is_valid_number(number)
    # Exact match for valid numbers: prefix matching would flag real Paris numbers (01 5x…)
    # because "15" is France's medical emergency number.
    if any(shortnumberinfo.is_emergency_number(nsn, r) for r in regions) or (
        not valid and any(shortnumberinfo.connects_to_emergency_number(nsn, r) for r in regions)
    ):
        raise NumberRefusedError("emergency", f"{nsn} is an emergency number; never dialled")
    if valid:
        return
    if (
        any(shortnumberinfo.is_valid_short_number_for_region(number, r) for r in regions)
        or len(nsn) <= SHORT_CODE_MAX_DIGITS
    ):
        raise NumberRefusedError("short_code", f"{nsn} is a short code, not a full phone number")


def _invalid_reason(number: PhoneNumber) -> NumberRefusedError:
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        message = f"+{number.country_code} is not a country code in use"
    elif reason == ValidationResult.TOO_SHORT:
        message = "too short for a phone number of that country"
    elif reason in (ValidationResult.TOO_LONG, ValidationResult.INVALID_LENGTH):
        message = "wrong number of digits for a phone number of that country"
    elif reason == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        message = "a local number: add the area code"
    else:
        message = "not an assigned phone number range"
    return NumberRefusedError("invalid", message)


def _refuse_by_type(number: PhoneNumber) -> None:
    kind = phonenumbers.number_type(number)
    # Only PREMIUM_RATE is refused: SHARED_COST (UK 084x, FR 081x) and UAN are ordinary
    # business lines (banks, clinics) that a user legitimately asks us to call.
    if kind == PhoneNumberType.PREMIUM_RATE:
        raise NumberRefusedError("premium_rate", "premium-rate numbers are never dialled")
    if kind in _NOT_DIALABLE_TYPES:
        raise NumberRefusedError(
            "not_dialable", "pager and voicemail-access numbers cannot take a conversation"
        )
    if phonenumbers.region_code_for_number(number) == _NON_GEOGRAPHIC_REGION:
        # +800/+808 universal numbers, +87x/+881 satellite, +882/+883 international networks:
        # no country to allow, no time zone for a calling window, and often costly.
        raise NumberRefusedError(
            "not_dialable",
            f"+{number.country_code} numbers are non-geographic (satellite or global "
            "services) and are not dialled",
        )


def _refuse_country(number: PhoneNumber, allowed_countries: Collection[str] | None) -> None:
    if allowed_countries is None:
        return
    allowed = {c.strip().upper() for c in allowed_countries}
    if ANY_COUNTRY in allowed:
        return
    region = phonenumbers.region_code_for_number(number)
    if region not in allowed:
        listed = ", ".join(sorted(allowed)) or "none"
        raise NumberRefusedError(
            "country_not_allowed",
            f"numbers in {region} may not be called by this tenant (allowed: {listed})",
        )
