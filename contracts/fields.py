"""Field types and rules shared by commands, replies and events."""

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

NAME_MAX: Final = 255
DETAIL_MAX: Final = 4096
SHORT_MAX: Final = 255
DIAL_TIMEOUT_MIN: Final = 1_000
DIAL_TIMEOUT_MAX: Final = 600_000
DIAL_TIMEOUT_DEFAULT: Final = 30_000
TRY_INTERVAL_MIN: Final = 1_000
TRY_INTERVAL_MAX: Final = 604_800_000
TRY_INTERVAL_DEFAULT: Final = 60_000
MAX_TRY_COUNT_MAX: Final = 100
PAGE_SIZE_MAX: Final = 100
BODY_MAX_BYTES: Final = 64 * 1024

_TEL_SEPARATORS = re.compile(r"[ \-.()]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SIP = re.compile(r"(?P<user>[^@\s:;]+)@(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?(?::[0-9]{1,5})?)")


# Characters PostgreSQL text (UTF-8) cannot hold: NUL, and UTF-16 surrogates, which are not
# characters at all (a JSON "\ud800" without its pair decodes to one; so do undecodable bytes
# read with errors="surrogateescape").
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` as text, as a rule ("must not contain ..."); else None."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain the NUL character (\\u0000)"
    return "must not contain a lone UTF-16 surrogate (\\ud800 to \\udfff); send valid Unicode text"


def _storable(value: str) -> str:
    # Refused here, with the field named, so that bad input never reaches the database.
    problem = unstorable(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Text = Annotated[str, AfterValidator(_storable)]
Name = Annotated[str, Field(max_length=NAME_MAX), AfterValidator(_storable)]
Detail = Annotated[str, Field(max_length=DETAIL_MAX), AfterValidator(_storable)]
Short = Annotated[str, Field(max_length=SHORT_MAX), AfterValidator(_storable)]
TryCount = Annotated[int, Field(ge=0, le=MAX_TRY_COUNT_MAX)]


def _milliseconds(lowest: int) -> AfterValidator:
    def check(value: int, info: ValidationInfo) -> int:
        if 0 < value < lowest:
            raise ValueError(
                f"{info.field_name} is in milliseconds; {value} ms is too short — "
                f"for {value} seconds send {value * 1000}"
            )
        if value < lowest:
            raise ValueError(f"must be at least {lowest} (milliseconds)")
        return value

    return AfterValidator(check)


# The minimum is checked in code (for the seconds hint) and stated in the JSON Schema too.
DialTimeout = Annotated[int, Field(le=DIAL_TIMEOUT_MAX, json_schema_extra={"minimum": DIAL_TIMEOUT_MIN}),
                        _milliseconds(DIAL_TIMEOUT_MIN)]
TryInterval = Annotated[int, Field(le=TRY_INTERVAL_MAX, json_schema_extra={"minimum": TRY_INTERVAL_MIN}),
                        _milliseconds(TRY_INTERVAL_MIN)]


def normalise_tel(target: str) -> str:
    """E.164 after removing spaces, dashes, dots and parentheses; ValueError otherwise."""
    number = _TEL_SEPARATORS.sub("", target)
    if not _E164.fullmatch(number):
        raise ValueError(
            "must be an E.164 number: '+' then 7 to 15 digits, the first not 0 (e.g. +15559876543)"
        )
    return number


def normalise_sip(target: str) -> str:
    """``user@host`` with the host lower-cased; ValueError otherwise."""
    match = _SIP.fullmatch(target)
    if match is None or len(target) > SHORT_MAX:
        raise ValueError(f"must be a SIP address user@host of at most {SHORT_MAX} characters")
    return f"{match['user']}@{match['host'].lower()}"


class Source(BaseModel):
    """The caller-ID address: a ``tel`` number in E.164 or a ``sip`` address."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: Literal["tel", "sip"]
    target: Text
    target_name: Short = ""
    name: Short = ""
    detail: Short = ""

    @field_validator("target")
    @classmethod
    def _normalise_target(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("type")
        if kind == "tel":
            return normalise_tel(value)
        if kind == "sip":
            return normalise_sip(value)
        return value  # the type itself failed and is reported on its own
