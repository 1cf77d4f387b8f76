"""One command written out in ways that all mean the same command: a retry spelled so is the same
command (the same idempotency fingerprint, the original reply)."""

import json
from typing import Any


def reordered(value: Any) -> Any:
    """``value`` with the keys of every object in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(v) for k, v in reversed(value.items())}
    return value


def spelled_otherwise(fields: dict[str, Any]) -> dict[str, str]:
    """``fields`` (a create body with a ``name``) as JSON text spelled otherwise, by how.

    None of the spellings is ``json.dumps(fields)`` itself.
    """
    name = fields["name"]
    return {
        "key order": json.dumps(reordered(fields)),
        "whitespace": json.dumps(fields, indent=4) + "\n",
        "compact": json.dumps(fields, separators=(",", ":")),
        "upper-case UUID": json.dumps({**fields, "customer_id": str(fields["customer_id"]).upper()}),
        "defaults sent": json.dumps(
            {**fields, "detail": "", "try_interval": 60000, **{f"max_try_count_{i}": 0 for i in range(5)}}
        ),
        "escaped text": json.dumps(fields).replace(f'"{name}"', f'"\\u{ord(name[0]):04x}{name[1:]}"'),
    }
