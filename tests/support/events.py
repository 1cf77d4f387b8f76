"""Events as the worker publishes them, for tests of what subscribers use (parse_event, Projection)."""

import json
import uuid
from typing import Any

from tests.support.commands import CUSTOMER, SOURCE

#: ``SOURCE`` as it is stored and published: every field present.
STORED_SOURCE = {**SOURCE, "target_name": "", "name": "", "detail": ""}


def event_body(
    kind: str,
    version: int,
    *,
    outplan_id: str | None = None,
    name: str = "n",
    source: dict[str, Any] | None = None,
    event_id: str | None = None,
    trace: dict[str, str] | None = None,
) -> bytes:
    """A CloudEvents body of ``kind`` for ``version`` of an outplan of ``CUSTOMER`` (a new one unless
    ``outplan_id`` is given), numbered ``version`` in the event log too; ``trace`` holds the
    ``traceparent`` (and ``tracestate``) attributes, placed as the worker writes them."""
    outplan_id = outplan_id or str(uuid.uuid4())
    data = {
        "id": outplan_id,
        "customer_id": CUSTOMER,
        "name": name,
        "detail": "",
        "source": STORED_SOURCE if source is None else source,
        "dial_timeout": 30000,
        "try_interval": 60000,
        **{f"max_try_count_{i}": 1 for i in range(5)},
        "tm_create": "2026-01-01 00:00:00.000000",
        "tm_update": "2026-01-01 00:00:00.000000",
        "tm_delete": "9999-01-01 00:00:00.000000",
    }
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "source": "outplan-worker",
            "type": kind,
            "subject": outplan_id,
            "time": "2026-01-01T00:00:00.000000Z",
            "datacontenttype": "application/json",
            "customerid": CUSTOMER,
            "outplanversion": version,
            "eventsequence": version,
            **(trace or {}),
            "data": data,
        }
    ).encode()
