"""Caller IDs proven twice: by the contract's validation (tests/unit/test_caller_ids.py) and through a
running worker (tests/e2e/test_caller_ids.py). The unit test has many more rows of its own."""

#: (source type, as typed, as stored): what people type is stored as what a carrier dials.
ACCEPTED: list[tuple[str, str, str]] = [
    ("tel", "+44 (0) 20 7946 0958", "+442079460958"),  # the UK way of writing the optional trunk 0
    ("tel", "+49(0)15123020522", "+4915123020522"),
    ("tel", "+33 06 12 34 56 78", "+33612345678"),
    ("tel", "0044 20 7946 0958", "+442079460958"),  # the international prefix 00
    ("tel", "+39 06 1234 5678", "+390612345678"),  # Italy has no trunk prefix: its 0 is part of the number
    ("tel", "\n+44 20 7946 0958\t", "+442079460958"),
    ("tel", "+44\u00a020\u00a07946\u00a00958", "+442079460958"),  # no-break spaces between the groups
    (
        "tel",
        "\uff0b\uff14\uff14 \uff12\uff10 \uff17\uff19\uff14\uff16 \uff10\uff19\uff15\uff18",  # full-width
        "+442079460958",
    ),
    ("tel", "+44/20/7946\u20130958", "+442079460958"),
    # The tutorial's number: not a "valid" number to libphonenumber (555 is not an assigned
    # exchange), yet the plan's shape, so it keeps working.
    ("tel", "+15559876543", "+15559876543"),
    ("sip", "sip:Alice@PBX.Example.COM:5060", "Alice@pbx.example.com:5060"),  # the user part keeps its case
    ("sip", "alice@[2001:DB8::1]", "alice@[2001:db8::1]"),
]

#: (source type, as typed, the whole message after "source.target "): what no carrier can dial.
REFUSED: list[tuple[str, str, str]] = [
    (
        "tel",
        "+999 1234567",
        "has an unknown country code: +9991234567 does not start with any country's calling code",
    ),
    (
        "tel",
        "+10123456789",
        "is not a number of country code +1 (US and 24 more): +10123456789 fits none of its number ranges",
    ),
    (
        "tel",
        "+44 20 7946 0958 x12",
        "must not have an extension (x, ext, #): a caller ID cannot carry one; send the main number",
    ),
    # A doubled trunk prefix: +490301234567 is no German number.
    (
        "tel",
        "+49 00 30 1234567",
        "is not a number of country code +49 (DE): +490301234567 fits none of its number ranges",
    ),
    (
        "tel",
        "020 7946 0958",
        "must be an international number starting with + or 00 and the country code (e.g. +44 20 7946 0958"
        " or 0044 20 7946 0958); numbers without a country code are not accepted",
    ),
    (
        "tel",
        "+44 20\n7946 0958",
        "must not contain control or bidirectional-formatting characters;"
        " found \\u000a (line feed) at position 6",
    ),
    ("sip", "alice@example.com:99999", "has an invalid port '99999': a port is a number from 1 to 65535"),
    (
        "sip",
        "alice@example..com",
        "has an empty label in the host name 'example..com' (two dots, or a dot at either end)",
    ),
    (
        "sip",
        "alice\x07@example.com",
        "must not contain control or bidirectional-formatting characters; found \\u0007 (bell) at position 5",
    ),
    (
        "sip",
        "alice@example.com\u202e",
        "must not contain control or bidirectional-formatting characters;"
        " found \\u202e (RIGHT-TO-LEFT OVERRIDE) at position 17",
    ),
    (
        "sip",
        "sips:alice@example.com",
        "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com); sips: URIs are not accepted,"
        " send the address without the scheme",
    ),
    (
        "sip",
        "alice@example.com;transport=tcp",
        "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com); URI parameters (;transport=…)"
        " and headers (?…) after the host are not accepted",
    ),
]


def row_ids(rows: list[tuple[str, str, str]]) -> list[str]:
    """Test ids: each row's caller ID as typed, escapes shown."""
    return [repr(given) for _, given, _ in rows]
