"""Field types and rules shared by commands, replies and events.

Commands are strict: their types below refuse what a dialer could not use. Replies and events
carry what is stored and read it back as stored (``StoredSource``), so that events logged under
earlier rules still parse.
"""

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .addresses import ADDRESS_MAX, control_character, normalise_sip, normalise_tel

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


def _printable(value: str) -> str:
    # Names show up in dialer screens and log lines, where a newline or a right-to-left
    # override makes them read as something else.
    problem = control_character(value)
    if problem is not None:
        raise ValueError(problem)
    return value


_NO_CONTROLS: Final = (
    "No control characters (U+0000..U+001F, U+007F..U+009F) and no bidirectional embeddings, "
    "overrides or isolates (U+202A..U+202E, U+2066..U+2069)."
)
_FREE_TEXT: Final = "Free text: any characters but NUL (U+0000) and lone UTF-16 surrogates."

Text = Annotated[str, AfterValidator(_storable)]
Name = Annotated[
    str,
    Field(max_length=NAME_MAX, description=f"A name shown to people. {_NO_CONTROLS}"),
    AfterValidator(_storable),
    AfterValidator(_printable),
]
Detail = Annotated[str, Field(max_length=DETAIL_MAX, description=_FREE_TEXT), AfterValidator(_storable)]
Label = Annotated[
    str,
    Field(max_length=SHORT_MAX, description=f"A name shown to people. {_NO_CONTROLS}"),
    AfterValidator(_storable),
    AfterValidator(_printable),
]
ShortDetail = Annotated[str, Field(max_length=SHORT_MAX, description=_FREE_TEXT), AfterValidator(_storable)]
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
DialTimeout = Annotated[
    int,
    Field(le=DIAL_TIMEOUT_MAX, json_schema_extra={"minimum": DIAL_TIMEOUT_MIN}),
    _milliseconds(DIAL_TIMEOUT_MIN),
]
TryInterval = Annotated[
    int,
    Field(le=TRY_INTERVAL_MAX, json_schema_extra={"minimum": TRY_INTERVAL_MIN}),
    _milliseconds(TRY_INTERVAL_MIN),
]


_TARGET_RULES: Final = (
    "tel: an international number, stored in E.164 (+ and up to 15 digits). It starts with + or 00 "
    "and the country code; white space of any kind at either end is trimmed; full-width characters "
    "are read as ASCII (Unicode NFKC); digits may be separated by spaces, - . ( ) / or Unicode dashes; "
    "a trunk prefix after the country code, as in +44 (0) 20 or +33 06, is dropped where the country "
    "has one. Refused: an unknown country code, a number too short or too long for its country or "
    "outside the country's number ranges (libphonenumber metadata), an extension, letters. "
    "sip: user@host[:port] of a SIP URI (RFC 3261): a leading sip: is dropped; the user part holds "
    "letters, digits, -_.!~*'()&=+$,;?/ and %XX escapes; the host is a DNS name, an IPv4 address or "
    "a bracketed IPv6 address and is lower-cased; the port is 1 to 65535; sips:, passwords, URI "
    f"parameters and headers are refused; at most {ADDRESS_MAX} characters. "
    "Neither may contain control or bidirectional-formatting characters."
)


class StoredSource(BaseModel):
    """The caller-ID address of an outplan as stored, in replies and events.

    Read as stored: values written under earlier, looser rules (``+4402079460958``) still parse.
    The rules a command must meet are those of ``Source``.
    """

    # Readers ignore fields added by later versions. A command's ``Source`` put into an
    # ``Outplan`` is copied into this type, so that outplans compare equal however they were built.
    model_config = ConfigDict(extra="ignore", frozen=True, revalidate_instances="subclass-instances")

    type: Literal["tel", "sip"]
    target: Annotated[
        str, Field(description="The caller ID, as stored: E.164 for tel, user@host[:port] for sip.")
    ]
    target_name: str = ""
    name: str = ""
    detail: str = ""


class Source(StoredSource):
    """The caller-ID address a command sets: a ``tel`` number (stored in E.164) or a ``sip``
    address (stored as ``user@host[:port]``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: Literal["tel", "sip"]
    target: Annotated[Text, Field(description=_TARGET_RULES)]
    target_name: Label = ""
    name: Label = ""
    detail: ShortDetail = ""

    @field_validator("target")
    @classmethod
    def _normalise_target(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("type")
        if kind == "tel":
            return normalise_tel(value)
        if kind == "sip":
            return normalise_sip(value)
        return value  # the type itself failed and is reported on its own
