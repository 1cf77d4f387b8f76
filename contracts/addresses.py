"""Caller-ID addresses as commands accept them, and the characters no identifier, address or name
may hold.

- ``normalise_tel``: an international telephone number, parsed and checked with libphonenumber's
  metadata, returned in E.164 (``+442079460958``).
- ``normalise_sip``: the ``user@host[:port]`` part of a SIP URI (RFC 3261, section 19.1 and the
  ABNF of section 25.1), host lower-cased (``alice@pbx.example.com:5060``).
- ``control_character``: the first control or bidirectional-formatting character of a text.

Each ``normalise_*`` returns the value to store or raises ``ValueError`` whose text is a rule a
person can act on; the model that calls it puts the field's name in front (``contracts.errors``).
Both results are fixpoints: normalising a stored value again returns it unchanged.
"""

import functools
import ipaddress
import re
import string
import unicodedata
from typing import Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumber, PhoneNumberFormat, ValidationResult

ADDRESS_MAX: Final = 255
DNS_NAME_MAX: Final = 253
DNS_LABEL_MAX: Final = 63

# Unicode's White_Space property (PropList.txt): trimmed from both ends of an address, so that a
# number copied with a trailing newline or a no-break space still reads as the number.
WHITE_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# C0 controls, DEL and C1 controls; the bidirectional embeddings, overrides (U+202A..U+202E) and
# isolates (U+2066..U+2069). In a dialer's screen or a log line they hide or reorder what follows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_NAMES: Final = {
    "\x00": "NUL",
    "\x07": "bell",
    "\x08": "backspace",
    "\t": "tab",
    "\n": "line feed",
    "\v": "vertical tab",
    "\f": "form feed",
    "\r": "carriage return",
    "\x1b": "escape",
    "\x7f": "delete",
    "\x85": "next line",
}


def describe(char: str) -> str:
    """``\\u202e (RIGHT-TO-LEFT OVERRIDE)``: a character as JSON would escape it, and its name."""
    name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "")
    code = f"\\u{ord(char):04x}"
    return f"{code} ({name})" if name else code


def control_character(value: str, *, ends_trimmed: bool = False) -> str | None:
    """Why ``value`` may not be an identifier, address or name, as a rule; else None.

    With ``ends_trimmed``, white space at either end (which addresses trim) is not looked at;
    the position named is still the position in ``value`` as sent."""
    start, end = 0, len(value)
    if ends_trimmed:
        start, end = len(value) - len(value.lstrip(WHITE_SPACE)), len(value.rstrip(WHITE_SPACE))
    found = _CONTROL.search(value, start, end)
    if found is None:
        return None
    return (
        "must not contain control or bidirectional-formatting characters; "
        f"found {describe(found.group())} at position {found.start()}"
    )


# ---------------------------------------------------------------------------------------------
# Telephone numbers

# Between digits: spaces of any kind (after NFKC most are U+0020), - . ( ) /, and the Unicode
# dashes U+2010..U+2015 and minus sign U+2212.
_TEL_SEPARATORS: Final = frozenset(" -.()/\u1680\u2010\u2011\u2012\u2013\u2014\u2015\u2212")
_TEL_CHARACTERS: Final = _TEL_SEPARATORS | frozenset(string.digits)
_TEL_EXAMPLE: Final = "e.g. +44 20 7946 0958 or 0044 20 7946 0958"
_NO_EXTENSION: Final = (
    "must not have an extension (x, ext, #): a caller ID cannot carry one; send the main number"
)


def _where(country_code: int) -> str:
    regions = phonenumbers.region_codes_for_country_code(country_code)
    if not regions or regions == ("001",):
        return f"the non-geographic country code +{country_code}"
    named = "/".join(regions) if len(regions) <= 3 else f"{regions[0]} and {len(regions) - 1} more"
    return f"country code +{country_code} ({named})"


def _fits_numbering_plan(number: PhoneNumber, country_code: int) -> bool:
    """The national significant number fullmatches the general pattern of a region with this
    calling code (``general_desc.national_number_pattern`` of libphonenumber's metadata).

    Weaker than ``is_valid_number``, which also wants a known number type: that one refuses the
    drama range ``+1 555 01xx`` and the whole ``555`` exchange the tutorial uses."""
    national = phonenumbers.national_significant_number(number)
    for region in phonenumbers.region_codes_for_country_code(country_code):
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        pattern = (
            metadata.general_desc.national_number_pattern if metadata and metadata.general_desc else None
        )
        if pattern and re.fullmatch(pattern, national):
            return True
    return False


E164_DIGITS_MAX: Final = 15  # ITU-T E.164: country code and national number together


def _parse_tel(text: str) -> str:
    """E.164 for a trimmed, NFKC-normalised spelling; ValueError naming what is wrong."""
    significant = text.lstrip("".join(_TEL_SEPARATORS))
    if significant.startswith("+"):
        rest = significant[1:]
    elif significant.startswith("00"):
        rest = significant[2:]  # the international prefix used in most of the world
    else:
        raise ValueError(
            "must be an international number starting with + or 00 and the country code "
            f"({_TEL_EXAMPLE}); numbers without a country code are not accepted"
        )
    bad = next((char for char in rest if char not in _TEL_CHARACTERS), None)
    if bad is not None:
        if _extension("+" + rest) is not None:
            raise ValueError(_NO_EXTENSION)
        raise ValueError(
            "may contain only digits after the leading + or 00, separated by spaces, - . ( ) / or "
            f"dashes; found {describe(bad) if not bad.isprintable() or bad.isspace() else repr(bad)}"
        )
    international = "+" + rest
    digits = "+" + "".join(char for char in rest if char in string.digits)
    try:
        # No default region: a caller ID is international, so the number carries its country.
        number = phonenumbers.parse(international, None)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            raise ValueError(
                f"has an unknown country code: {digits} does not start with any country's calling code"
            ) from None
        if exc.error_type == NumberParseException.TOO_LONG:
            raise ValueError(f"is too long to be a phone number ({digits})") from None
        raise ValueError(f"is too short to be a phone number ({digits})") from None
    if number.extension:
        raise ValueError(_NO_EXTENSION)
    stored = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    country_code = number.country_code
    assert country_code is not None  # parse() sets it on every number it returns
    where = _where(country_code)
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason in (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        raise ValueError(f"is too short for {where}: {stored} (is a digit or the area code missing?)")
    if reason == ValidationResult.TOO_LONG:
        raise ValueError(f"is too long for {where}: {stored}")
    if reason == ValidationResult.INVALID_LENGTH:
        raise ValueError(f"has a length no number of {where} has: {stored}")
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        raise ValueError(
            f"has an unknown country code: {digits} does not start with any country's calling code"
        )
    if not _fits_numbering_plan(number, country_code):
        raise ValueError(f"is not a number of {where}: {stored} fits none of its number ranges")
    if len(stored) - 1 > E164_DIGITS_MAX:  # libphonenumber admits longer national numbers (Germany)
        raise ValueError(
            f"is too long: {stored} has {len(stored) - 1} digits; E.164 allows at most "
            f"{E164_DIGITS_MAX}, country code included"
        )
    return stored


def _extension(international: str) -> str | None:
    """The extension libphonenumber finds (``x12``, ``ext. 12``, ``#12``, ``;ext=12``), if any."""
    try:
        return phonenumbers.parse(international, None).extension
    except NumberParseException:
        return None


# Pure, and a campaign sends the same caller ID again and again: remember the last few thousand.
@functools.lru_cache(maxsize=4096)
def normalise_tel(target: str) -> str:
    """The E.164 form (``+`` and up to 15 digits) of an international telephone number.

    Accepted spellings: white space of any kind at either end is trimmed; the text is Unicode
    NFKC-normalised (full-width ``＋`` and digits become ASCII); it starts with ``+`` or the
    international prefix ``00``, then the country code; digits may be separated by spaces of any
    kind, ``-``, ``.``, ``(``, ``)``, ``/`` or Unicode dashes. A national trunk prefix written after
    the country code (``+44 (0) 20 …``, ``+33 06 …``) is dropped where the country's numbering
    plan has one (libphonenumber's metadata ``national_prefix_for_parsing``); Italy, which has
    none, keeps its leading 0.

    Refused: no country code, an unknown one, too short or too long for the country
    (``is_possible_number``), outside every range of the country's plan (the metadata's
    ``general_desc`` pattern: ``+49 00 30 1234567`` would give ``+490301234567``, which no German
    number looks like), an extension, and, as a guard, a spelling whose E.164 form would not read
    back as itself: what is stored must mean the same number when it is read again.
    """
    problem = control_character(target, ends_trimmed=True)
    if problem is not None:
        raise ValueError(problem)
    text = unicodedata.normalize("NFKC", target).strip(WHITE_SPACE)
    stored = _parse_tel(text)
    try:
        again = _parse_tel(stored)
    except ValueError:
        again = None
    check_reads_back(stored, again)
    return stored


def check_reads_back(stored: str, again: str | None) -> None:
    """The guard of ``normalise_tel``: ``stored`` (an E.164 form) must read back as itself.

    ``again`` is what parsing ``stored`` gave (None: it did not parse). Raises ``ValueError``
    ("is ambiguous: …") when they differ, so that what is stored always means the same number.
    """
    if again != stored:
        reads_back = f"reads back as {again}" if again else "does not read back as a number"
        raise ValueError(
            f"is ambiguous: it would be stored as {stored}, which {reads_back}; "
            "check the digits right after the country code"
        )


# ---------------------------------------------------------------------------------------------
# SIP addresses

# RFC 3261 section 25.1: user = 1*( unreserved / escaped / user-unreserved )
#   unreserved = alphanum / "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
#   user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/";  escaped = "%" HEXDIG HEXDIG
_USER_CHARACTERS: Final = frozenset(string.ascii_letters + string.digits + "-_.!~*'()" + "&=+$,;?/")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_SIP_SHAPE: Final = "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com)"


def _sip_user(user: str) -> None:
    if not user:
        raise ValueError(f"{_SIP_SHAPE}; the user part before @ is empty")
    if ":" in user:
        raise ValueError(
            f"{_SIP_SHAPE}; the user part must not contain ':' (a password, or a scheme other than sip:)"
        )
    bad = next((c for c in _ESCAPE.sub("", user) if c not in _USER_CHARACTERS), None)
    if bad is not None:
        shown = repr(bad) if bad.isprintable() and not bad.isspace() else describe(bad)
        raise ValueError(
            f"has a character not allowed in a SIP user part: {shown}; RFC 3261 allows letters, digits, "
            "- _ . ! ~ * ' ( ) & = + $ , ; ? / and %XX escapes"
        )


def _sip_host(host: str) -> str:
    """The lower-cased host: a DNS name, a dotted IPv4 address or a bracketed IPv6 reference."""
    if host.startswith("["):
        if not host.endswith("]") or "%" in host:
            raise ValueError(f"has an invalid IPv6 reference {host!r}: write it as [2001:db8::1]")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"has an invalid IPv6 address in {host!r}") from None
        return host.lower()
    if not host:
        raise ValueError(f"{_SIP_SHAPE}; the host after @ is empty")
    if not host.isascii():
        raise ValueError(
            "has a host that is not ASCII: write an internationalised domain name in its xn-- form"
        )
    host = host.lower()
    labels = host.split(".")
    if all(label.isdigit() for label in labels if label) and len(labels) == 4:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"has an invalid IPv4 address {host!r}") from None
        return host
    if len(host) > DNS_NAME_MAX:
        raise ValueError(f"has a host name longer than {DNS_NAME_MAX} characters")
    for label in labels:
        if not label:
            raise ValueError(
                f"has an empty label in the host name {host!r} (two dots, or a dot at either end)"
            )
        if len(label) > DNS_LABEL_MAX:
            raise ValueError(f"has a host name label longer than {DNS_LABEL_MAX} characters")
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"has an invalid host name label {label!r}: letters, digits and hyphens, "
                "not starting or ending with a hyphen"
            )
    if not labels[-1][0].isalpha():
        raise ValueError(
            f"has an invalid host {host!r}: the last label of a host name starts with a letter "
            "(RFC 3261 toplabel), and an IPv4 address has four numbers"
        )
    return host


@functools.lru_cache(maxsize=4096)
def normalise_sip(target: str) -> str:
    """``user@host[:port]``, host lower-cased, port without leading zeros, at most 255 characters.

    The rules of a SIP URI's user, host and port (RFC 3261, section 25.1): the user part holds
    letters, digits, ``-_.!~*'()&=+$,;?/`` and ``%XX`` escapes and keeps its case (section 19.1.4
    compares it case-sensitively); the host is a DNS name (labels of 1 to 63 letters, digits and
    inner hyphens, at most 253 characters, the last label starting with a letter), a dotted IPv4
    address, or an IPv6 address in brackets; the port is 1 to 65535. White space of any kind at
    either end is trimmed and a leading ``sip:`` (any case) is dropped, so a pasted URI works;
    ``sips:``, a password, URI parameters (``;transport=tcp``) and headers (``?subject=…``) are
    refused, as are control and bidirectional-formatting characters.
    """
    problem = control_character(target, ends_trimmed=True)
    if problem is not None:
        raise ValueError(problem)
    text = target.strip(WHITE_SPACE)
    scheme = text[:5].lower()
    if scheme == "sips:":
        raise ValueError(f"{_SIP_SHAPE}; sips: URIs are not accepted, send the address without the scheme")
    if scheme.startswith("sip:"):
        text = text[4:]
    user, at, rest = text.partition("@")
    if not at:
        raise ValueError(f"{_SIP_SHAPE}; there is no @")
    if "@" in rest:
        raise ValueError(f"{_SIP_SHAPE}; there is more than one @ (write an @ in the user part as %40)")
    _sip_user(user)
    if ";" in rest or "?" in rest:
        raise ValueError(
            f"{_SIP_SHAPE}; URI parameters (;transport=…) and headers (?…) after the host are not accepted"
        )
    host, colon, port = rest, "", ""
    if rest.startswith("[") and "]" in rest:
        closing = rest.index("]")
        host, after = rest[: closing + 1], rest[closing + 1 :]
        if after and not after.startswith(":"):
            raise ValueError(f"{_SIP_SHAPE}; unexpected text after the IPv6 address")
        colon, port = after[:1], after[1:]
    elif ":" in rest:
        host, colon, port = rest.partition(":")
        if ":" in port:
            raise ValueError(
                f"{_SIP_SHAPE}; an IPv6 host must be written in brackets, e.g. alice@[2001:db8::1]"
            )
    stored_host = _sip_host(host)
    if colon:
        if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
            raise ValueError(f"has an invalid port {port!r}: a port is a number from 1 to 65535")
        stored_host += f":{int(port)}"
    stored = f"{user}@{stored_host}"
    if len(stored) > ADDRESS_MAX:
        raise ValueError(f"must be at most {ADDRESS_MAX} characters as a SIP address")
    return stored
