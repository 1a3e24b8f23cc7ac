"""Destination numbers: E.164 normalisation and the abuse guards of DESIGN.md §7."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db.phone import (
    MAX_INPUT_CHARS,
    NumberRefusedError,
    normalize_destination,
    region_of,
    zones_for_number,
)

pytestmark = pytest.mark.unit


def _refusal(raw: str, **kwargs: object) -> NumberRefusedError:
    with pytest.raises(NumberRefusedError) as info:
        normalize_destination(raw, **kwargs)  # type: ignore[arg-type]
    assert str(info.value), "a refusal must carry a human message"
    return info.value


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+1 415 555 0100", None, "+14155550100"),
        ("+14155550100", None, "+14155550100"),
        ("  +1 (415) 555-0100  ", None, "+14155550100"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("(415) 555-0100", "us", "+14155550100"),
        ("+33 1 42 68 53 00", None, "+33142685300"),
        ("01 42 68 53 00", "FR", "+33142685300"),
        ("+44 20 7946 0000", None, "+442079460000"),
        ("+49 30 123456", None, "+4930123456"),
        ("1-800-FLOWERS", "US", "+18003569377"),
    ],
)
def test_valid_numbers_are_normalised_to_e164(raw: str, region: str | None, expected: str) -> None:
    assert normalize_destination(raw, default_region=region) == expected


@pytest.mark.parametrize("last_two", ["00", "01", "42", "99"])
def test_simulated_world_callees_415_555_01xx_pass(last_two: str) -> None:
    assert normalize_destination(f"+1 415 555 01{last_two}") == f"+1415555 01{last_two}".replace(
        " ", ""
    )


def test_valid_paris_number_starting_like_emergency_15_is_not_refused() -> None:
    # "15" is France's medical emergency number; a prefix match would refuse 01 5x numbers.
    assert normalize_destination("+33 1 53 00 00 00") == "+33153000000"


def test_shared_cost_and_uan_business_numbers_are_allowed() -> None:
    assert normalize_destination("+33 8 10 12 34 56") == "+33810123456"  # FR shared cost
    assert normalize_destination("+44 300 123 4567") == "+443001234567"  # UK UAN


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("911", "US"),
        ("+1 911", None),
        ("+1911", None),
        ("112", "FR"),
        ("+33 112", None),
        ("112", "DE"),
        ("999", "GB"),
        ("+44 999", None),
        ("+44 112", None),
        ("000", "AU"),
        ("15", "FR"),
        ("110", "DE"),
        # Dialled on a NANP line, these digits reach 911 before the rest is read.
        ("+1 911 555 0100", None),
        # 311 is Barbados' emergency number; +1 covers Barbados too.
        ("+1 311", None),
    ],
)
def test_emergency_numbers_are_refused(raw: str, region: str | None) -> None:
    assert _refusal(raw, default_region=region).code == "emergency"


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("411", "US"),
        ("+1 611", None),
        ("+1 12345", None),
        ("116117", "DE"),
        ("+44 116 123", None),
        ("3676", "FR"),
        ("+112", None),
    ],
)
def test_short_codes_are_refused(raw: str, region: str | None) -> None:
    assert _refusal(raw, default_region=region).code == "short_code"


@pytest.mark.parametrize(
    "raw",
    [
        "+1 900 555 0100",
        "+1 900 200 1234",
        "+44 909 879 0000",
        "+44 9098790000",
        "+33 8 99 12 34 56",
    ],
)
def test_premium_rate_numbers_are_refused(raw: str) -> None:
    assert _refusal(raw).code == "premium_rate"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "abc",
        "not a number",
        "+",
        "+999 1234 5678",
        "+1 415 555 01",
        "+1 415 555 010000",
        "+1 555 1212",
        "(415) 555-0100",
        "+1 415 555 0100 ext 5",
    ],
)
def test_invalid_strings_are_refused_as_invalid(raw: str) -> None:
    assert _refusal(raw).code == "invalid"


def test_local_number_without_region_asks_for_the_country_code() -> None:
    error = _refusal("(415) 555-0100")
    assert "+" in str(error)


def test_extension_is_refused_rather_than_silently_dropped() -> None:
    assert "extension" in str(_refusal("+1 415 555 0100 ext 5"))


@pytest.mark.parametrize("size", [MAX_INPUT_CHARS + 1, 1000, 100 * 1024])
def test_huge_inputs_are_refused_as_invalid_without_echoing_them(size: int) -> None:
    raw = ("+1 415 555 0100 " * (size // 16 + 1))[:size]
    error = _refusal(raw)
    assert error.code == "invalid"
    assert len(str(error)) < 200


def test_non_text_input_is_refused_as_invalid() -> None:
    assert _refusal(14155550100).code == "invalid"  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["+800 1234 5678", "+882 1234 5678 90", "+870 773 111 632"])
def test_non_geographic_numbers_are_not_dialable(raw: str) -> None:
    error = _refusal(raw)
    assert error.code in {"not_dialable", "invalid"}
    if phonenumbers.is_valid_number(phonenumbers.parse(raw)):
        assert error.code == "not_dialable"


@pytest.mark.parametrize(
    ("raw", "allowed"),
    [
        ("+44 20 7946 0000", ["US", "FR"]),
        ("+1 415 555 0100", ["FR"]),
        ("+1 415 555 0100", []),
        ("+33 1 42 68 53 00", {"us"}),
    ],
)
def test_numbers_outside_allowed_countries_are_refused(raw: str, allowed: list[str]) -> None:
    assert _refusal(raw, allowed_countries=allowed).code == "country_not_allowed"


def test_allowed_countries_are_matched_case_insensitively() -> None:
    assert normalize_destination("+33 1 42 68 53 00", allowed_countries=["fr"]) == "+33142685300"


@pytest.mark.parametrize("allowed", [["*"], ("FR", "*"), None])
def test_star_or_none_allows_every_country(allowed: list[str] | None) -> None:
    for raw in ("+44 20 7946 0000", "+1 415 555 0100", "+81 3 1234 5678"):
        assert normalize_destination(raw, allowed_countries=allowed).startswith("+")


def test_abuse_guards_apply_even_when_every_country_is_allowed() -> None:
    assert _refusal("+1 911", allowed_countries=["*"]).code == "emergency"
    assert _refusal("+1 900 555 0100", allowed_countries=["*"]).code == "premium_rate"


def test_every_regions_example_fixed_line_and_mobile_number_passes() -> None:
    # Guards against the emergency/short-code checks refusing ordinary numbers anywhere.
    refused = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            try:
                assert normalize_destination(e164) == e164
            except NumberRefusedError as exc:
                refused.append((region, e164, exc.code))
    assert refused == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_is_either_normalised_or_refused_with_a_known_code(raw: str) -> None:
    try:
        e164 = normalize_destination(raw, default_region="US")
    except NumberRefusedError as exc:
        assert exc.code in {
            "invalid",
            "emergency",
            "short_code",
            "premium_rate",
            "country_not_allowed",
            "not_dialable",
        }
    else:
        assert e164.startswith("+")
        assert phonenumbers.is_valid_number(phonenumbers.parse(e164))


def test_region_of_gives_iso_alpha2() -> None:
    assert region_of("+14155550100") == "US"
    assert region_of("+33142685300") == "FR"
    assert region_of("+80012345678") is None


def test_region_of_refuses_garbage() -> None:
    with pytest.raises(NumberRefusedError):
        region_of("banana")


def test_zones_for_number_are_sorted_deduplicated_and_known() -> None:
    assert zones_for_number("+14155550100") == ("America/Los_Angeles",)
    assert zones_for_number("+12085550100") == ("America/Boise", "America/Los_Angeles")
    many = zones_for_number("+18005550100")
    assert list(many) == sorted(set(many))
    assert "Etc/Unknown" not in many


def test_zones_for_number_without_a_zone_is_empty() -> None:
    assert zones_for_number("+80012345678") == ()
