"""Per-command cost of reading a body: the lenient parse before strict JSON, and the strict one.

``old`` is what decoding a body cost before: pydantic's ``model_validate_json`` on the raw
bytes (it takes the last of repeated keys and reads NaN) and the sha256 of the raw body, the
idempotency hash of the time. ``new`` is the strict parse that replaced it: the strict JSON
check (``strict_json_problems``), the same validation, and for changes the fingerprint of the
validated command plus the raw-body hash kept for the upgrade window. ``decode`` is the whole
of ``worker.requests.decode`` (properties, content type and encoding, message_id) for scale.

Each round times every variant on every body, interleaved; the figures are medians over the
rounds, in microseconds per call, and the ratio of the medians new/old. The refused bodies
(a repeated key; 64 KiB of them) show what the slower exact parse costs when it runs.

    .venv/bin/python -m bench.decode [--rounds 9] [--number 20000]
"""

import argparse
import hashlib
import json
import statistics
import timeit
import uuid
from collections.abc import Callable

from pydantic import ValidationError

from contracts import COMMANDS, names
from worker.requests import decode, fingerprint, strict_json_problems

CUSTOMER = str(uuid.uuid4())
OUTPLAN = str(uuid.uuid4())
_DIAL = {
    "dial_timeout": 30000,
    "try_interval": 600000,
    "max_try_count_0": 3,
    "max_try_count_1": 2,
    "max_try_count_2": 1,
    "max_try_count_3": 0,
    "max_try_count_4": 0,
}
BODIES: dict[str, tuple[str, bytes]] = {
    "create (tel)": (
        names.CREATE,
        json.dumps(
            {
                "customer_id": CUSTOMER,
                "name": "Spring renewals, east coast",
                "detail": "Customers whose contracts end in April; business hours only",
                "source": {
                    "type": "tel",
                    "target": "+15559876543",
                    "target_name": "Renewals desk",
                    "name": "main line",
                    "detail": "toll-free",
                },
                **_DIAL,
            }
        ).encode(),
    ),
    # ':' inside strings, which the quick check for repeated keys must not count as keys.
    "create (sip:port)": (
        names.CREATE,
        json.dumps(
            {
                "customer_id": CUSTOMER,
                "name": "Spring renewals, east coast",
                "detail": "Customers whose contracts end in April; business hours only",
                "source": {
                    "type": "sip",
                    "target": "renewals@pbx.example.com:5060",
                    "target_name": "Renewals desk",
                    "name": "main trunk",
                    "detail": "PBX",
                },
                **_DIAL,
            }
        ).encode(),
    ),
    "list": (names.LIST, json.dumps({"customer_id": CUSTOMER, "page_size": 50, "page_token": ""}).encode()),
    "update_dial_info": (
        names.UPDATE_DIAL_INFO,
        json.dumps(
            {
                "customer_id": CUSTOMER,
                "id": OUTPLAN,
                "source": {"type": "tel", "target": "+15559876543"},
                **_DIAL,
            }
        ).encode(),
    ),
}


_REPEATED = {"customer_id": CUSTOMER, "source": {"type": "tel", "target": "+15559876543"}}
REFUSED: dict[str, tuple[str, bytes]] = {
    "customer_id twice": (
        names.CREATE,
        json.dumps(_REPEATED).replace('"source"', f'"customer_id": "{uuid.uuid4()}", "source"').encode(),
    ),
    "64 KiB of repeats": (
        names.CREATE,
        (json.dumps(_REPEATED)[:-1] + ', "x": [' + ",".join(['{"a:b": 1, "a:b": 2}'] * 3000) + "]}").encode(),
    ),
}


def old(name: str, body: bytes) -> Callable[[], object]:
    model = COMMANDS[name]

    def run() -> object:
        try:
            command = model.model_validate_json(body)
        except ValidationError as exc:  # a 400 either way; its cost counts
            return exc
        return command, hashlib.sha256(name.encode() + b"\0" + body).digest()

    return run


def new(name: str, body: bytes) -> Callable[[], object]:
    model = COMMANDS[name]

    def run() -> object:
        if problems := strict_json_problems(body):
            return problems
        command = model.model_validate_json(body)
        if not model.mutates:
            return command
        return command, fingerprint(command), hashlib.sha256(name.encode() + b"\0" + body).digest()

    return run


def whole(name: str, body: bytes) -> Callable[[], object]:
    def run() -> object:
        return decode(
            body,
            content_type="application/json",
            routing_key=name,
            type_=None,
            message_id="m-1",
            correlation_id=None,
        )

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--number", type=int, default=20_000, help="calls per variant per round")
    args = parser.parse_args()
    variants = {"old": old, "new": new, "decode": whole}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for label, (name, body) in {**BODIES, **REFUSED}.items():
            number = args.number if len(body) < 1000 else max(args.number // 100, 10)
            for variant, make in variants.items():
                seconds = timeit.timeit(make(name, body), number=number)
                times.setdefault((label, variant), []).append(seconds / number * 1e6)
    print(f"median of {args.rounds} rounds of {args.number} calls, microseconds per call")
    print(f"{'body':<20}{'bytes':>6}{'old':>9}{'new':>9}{'new/old':>9}{'decode':>9}")
    for label, (_, body) in {**BODIES, **REFUSED}.items():
        if label in REFUSED and label == next(iter(REFUSED)):
            print("refused as MALFORMED_JSON now (old: accepted, the last value winning)")
        m = {variant: statistics.median(times[(label, variant)]) for variant in variants}
        print(
            f"{label:<20}{len(body):>6}{m['old']:>9.2f}{m['new']:>9.2f}{m['new'] / m['old']:>9.2f}"
            f"{m['decode']:>9.2f}"
        )


if __name__ == "__main__":
    main()
