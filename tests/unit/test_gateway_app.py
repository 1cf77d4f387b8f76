"""The gateway's HTTP side, in process, against a broker that records what it is asked: what each
call sends, what it answers, and what it refuses before anything is sent."""

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import ErrorInfo, Reply, names
from contracts.client import UnreadableReply
from worker.gateway.app import application
from worker.gateway.auth import Verifier, mint
from worker.gateway.broker import Broker, BrokerUnavailable, NoReply
from worker.gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit

SETTINGS = GatewaySettings(jwt_secret="s" * 32)  # type: ignore[arg-type]  # pydantic turns str into SecretStr
CUSTOMER = uuid.uuid4()
TOKEN = mint(SETTINGS, CUSTOMER)
OUTPLAN_ID = str(uuid.uuid4())
OUTPLAN = {
    "id": OUTPLAN_ID,
    "customer_id": str(CUSTOMER),
    "name": "n",
    "detail": "",
    "source": {"type": "tel", "target": "+15559876543", "target_name": "", "name": "", "detail": ""},
    "dial_timeout": 30000,
    "try_interval": 60000,
    **{f"max_try_count_{i}": 0 for i in range(5)},
    "tm_create": "2026-01-01 00:00:00.000000",
    "tm_update": "2026-01-01 00:00:00.000000",
    "tm_delete": "9999-01-01 00:00:00.000000",
}


class RecordingBroker(Broker):
    """Answers every call with ``reply`` (or raises ``error``) and records what was sent."""

    def __init__(self) -> None:
        super().__init__(["amqp://unused/"], exchange="x", timeout=1)
        self.sent: list[tuple[str, dict[str, Any], str | None]] = []
        self.headers: list[dict[str, Any]] = []
        self.reply = Reply(status_code=200, data=OUTPLAN)
        self.error: Exception | None = None
        self.up = True

    @property
    def connected(self) -> bool:
        return self.up

    async def call(
        self, command: str, body: bytes, *, message_id: str | None, headers: Mapping[str, Any]
    ) -> Reply:
        self.sent.append((command, orjson.loads(body), message_id))
        self.headers.append(dict(headers))
        if self.error is not None:
            raise self.error
        return self.reply


@pytest.fixture
def broker() -> RecordingBroker:
    return RecordingBroker()


@pytest.fixture
async def client(broker: RecordingBroker) -> AsyncIterator[httpx.AsyncClient]:
    app = application(Verifier.from_settings(SETTINGS), broker)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        yield http


ITEM = f"/v1.0/outplans/{OUTPLAN_ID}"


@pytest.mark.parametrize(
    ("method", "path", "body", "command", "fields"),
    [
        (
            "GET",
            "/v1.0/outplans?page_size=2&page_token=x",
            None,
            names.LIST,
            {"page_size": 2, "page_token": "x"},
        ),
        ("GET", f"{ITEM}?include_deleted=true", None, names.GET, {"id": OUTPLAN_ID, "include_deleted": True}),
        ("POST", "/v1.0/outplans", {"name": "n"}, names.CREATE, {"name": "n"}),
        (
            "PUT",
            ITEM,
            {"name": "n", "detail": "d"},
            names.UPDATE_BASIC_INFO,
            {"id": OUTPLAN_ID, "name": "n", "detail": "d"},
        ),
        (
            "PUT",
            f"{ITEM}/dial_info",
            {"dial_timeout": 1000},
            names.UPDATE_DIAL_INFO,
            {"id": OUTPLAN_ID, "dial_timeout": 1000},
        ),
        ("DELETE", ITEM, None, names.DELETE, {"id": OUTPLAN_ID}),
    ],
)
async def test_each_call_sends_its_command_with_the_tokens_customer(
    client: httpx.AsyncClient,
    broker: RecordingBroker,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    command: str,
    fields: dict[str, Any],
) -> None:
    separator = "&" if "?" in path else "?"
    answer = await client.request(method, f"{path}{separator}token={TOKEN}", json=body)
    assert answer.status_code == 200, answer.text
    assert broker.sent == [(command, {"customer_id": str(CUSTOMER), **fields}, None)]
    assert "customer_id" not in answer.json()  # the outplan as the tutorial shows it
    assert answer.json()["id"] == OUTPLAN_ID


async def test_the_list_answer_drops_customer_id_from_each_outplan(
    client: httpx.AsyncClient, broker: RecordingBroker
) -> None:
    broker.reply = Reply(status_code=200, data={"result": [OUTPLAN, OUTPLAN], "next_page_token": "t"})
    answer = await client.get(f"/v1.0/outplans?token={TOKEN}")
    expected = {k: v for k, v in OUTPLAN.items() if k != "customer_id"}
    assert answer.json() == {"result": [expected, expected], "next_page_token": "t"}


async def test_the_replys_status_and_error_are_the_answer(
    client: httpx.AsyncClient, broker: RecordingBroker
) -> None:
    error = ErrorInfo(status="NOT_FOUND", reason="OUTPLAN_NOT_FOUND", message="no such outplan")
    broker.reply = Reply(status_code=404, error=error)
    answer = await client.get(f"{ITEM}?token={TOKEN}")
    assert answer.status_code == 404
    assert answer.json() == error.model_dump()


async def test_the_idempotency_key_is_the_message_id(
    client: httpx.AsyncClient, broker: RecordingBroker
) -> None:
    key = str(uuid.uuid4())
    await client.post(f"/v1.0/outplans?token={TOKEN}", json={}, headers={"Idempotency-Key": key})
    await client.post(f"/v1.0/outplans?token={TOKEN}", json={}, headers={"Idempotency-Key": f'"{key}"'})
    assert [sent[2] for sent in broker.sent] == [key, key]
    for bad in (b"", "é".encode(), b"x" * 256, b" ", b"a\tb"):
        answer = await client.post(
            f"/v1.0/outplans?token={TOKEN}", json={}, headers={b"Idempotency-Key": bad}
        )
        assert answer.status_code == 400, bad
        assert answer.json()["details"][0]["field"] == "Idempotency-Key"
    assert len(broker.sent) == 2


@pytest.mark.parametrize(
    ("content", "headers", "status", "reason", "field"),
    [
        (b'{"customer_id": "%s"}' % str(uuid.uuid4()).encode(), {}, 403, "CUSTOMER_MISMATCH", "customer_id"),
        (b'{"customer_id": 7}', {}, 400, "VALIDATION_FAILED", "customer_id"),
        (b'{"name": "a", "name": "b"}', {}, 400, "MALFORMED_JSON", "name"),
        (b'{"dial_timeout": NaN}', {}, 400, "MALFORMED_JSON", "dial_timeout"),
        (b"{", {}, 400, "MALFORMED_JSON", None),
        (b"", {}, 400, "MALFORMED_JSON", None),
        (b"[]", {}, 400, "NOT_AN_OBJECT", None),
        (b"\xff", {}, 400, "MALFORMED_JSON", None),
        (b"{}", {"Content-Type": "text/plain"}, 415, "UNSUPPORTED_CONTENT_TYPE", "Content-Type"),
        (
            b"{}",
            {"Content-Type": "application/json; charset=latin-1"},
            415,
            "UNSUPPORTED_CONTENT_TYPE",
            "Content-Type",
        ),
        (b"[" * 100_000, {}, 413, "BODY_TOO_LARGE", None),
        (b'{"id": "%s"}' % str(uuid.uuid4()).encode(), {}, 400, "VALIDATION_FAILED", "id"),
    ],
)
async def test_refused_before_anything_is_sent(
    client: httpx.AsyncClient,
    broker: RecordingBroker,
    content: bytes,
    headers: dict[str, str],
    status: int,
    reason: str,
    field: str | None,
) -> None:
    headers = {"Content-Type": "application/json", **headers}
    answer = await client.put(f"{ITEM}?token={TOKEN}", content=content, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["reason"] == reason
    assert [d["field"] for d in answer.json()["details"]][:1] == ([field] if field else [])
    assert broker.sent == []


async def test_a_streamed_body_is_cut_at_64_kib(client: httpx.AsyncClient, broker: RecordingBroker) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    answer = await client.post(
        f"/v1.0/outplans?token={TOKEN}", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert (answer.status_code, answer.json()["reason"]) == (413, "BODY_TOO_LARGE")
    assert broker.sent == []


async def test_ones_own_customer_id_and_the_paths_id_may_be_sent(
    client: httpx.AsyncClient, broker: RecordingBroker
) -> None:
    body = {"customer_id": str(CUSTOMER).upper(), "id": OUTPLAN_ID, "name": "n", "detail": ""}
    answer = await client.put(f"{ITEM}?token={TOKEN}", json=body)
    assert answer.status_code == 200
    assert broker.sent[0][1]["customer_id"] == str(CUSTOMER)  # the token's spelling is sent


def _unreadable() -> UnreadableReply:
    try:
        Reply.model_validate_json(b"{}")
    except ValidationError as exc:
        return UnreadableReply(names.GET, b"{}", exc)
    raise AssertionError("an empty object is not a Reply")


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (BrokerUnavailable("down"), 503, "BROKER_UNAVAILABLE"),
        (NoReply("late"), 504, "NO_REPLY"),
        (_unreadable(), 502, "UNREADABLE_REPLY"),
    ],
)
async def test_broker_trouble_is_a_503_504_or_502(
    client: httpx.AsyncClient, broker: RecordingBroker, error: Exception, status: int, reason: str
) -> None:
    broker.error = error
    answer = await client.get(f"{ITEM}?token={TOKEN}")
    assert (answer.status_code, answer.json()["reason"]) == (status, reason)
    if status == 503:
        assert answer.headers["retry-after"] == "2"


async def test_query_parameters_are_checked(client: httpx.AsyncClient, broker: RecordingBroker) -> None:
    unknown = await client.get(f"/v1.0/outplans?token={TOKEN}&pagesize=2")
    assert unknown.status_code == 400 and unknown.json()["details"][0]["field"] == "pagesize"
    twice = await client.get(f"/v1.0/outplans?token={TOKEN}&page_size=1&page_size=2")
    assert twice.status_code == 400 and twice.json()["details"][0]["field"] == "page_size"
    text = await client.get(f"/v1.0/outplans?token={TOKEN}&page_size=ten")
    assert text.status_code == 200 and broker.sent[0][1]["page_size"] == "ten"  # the worker names it


async def test_health_metrics_and_unknown_routes(client: httpx.AsyncClient, broker: RecordingBroker) -> None:
    assert (await client.get("/livez")).status_code == 200
    assert (await client.get("/readyz")).json() == {"broker_ok": True}
    broker.up = False
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()) == (503, {"broker_ok": False})
    missing = await client.get("/v2/outplans")
    assert (missing.status_code, missing.json()["reason"]) == (404, "ROUTE_NOT_FOUND")
    patch = await client.patch(f"{ITEM}?token={TOKEN}")
    assert (patch.status_code, patch.headers["allow"]) == (405, "DELETE, GET, PUT")
    await client.get(f"{ITEM}?token={TOKEN}")
    metrics = (await client.get("/metrics")).text
    assert 'outplan_gateway_requests_total{method="GET",route="/v1.0/outplans/{id}",status="200"}' in metrics
    assert (
        'outplan_gateway_request_duration_seconds_count{method="GET",route="/v1.0/outplans/{id}"}' in metrics
    )
    assert 'route="other",status="404"' in metrics


async def test_head_is_answered_as_get(client: httpx.AsyncClient, broker: RecordingBroker) -> None:
    answer = await client.head(f"{ITEM}?token={TOKEN}")
    assert answer.status_code == 200 and answer.content == b""
    assert broker.sent[0][0] == names.GET


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(
        ["/v1.0/outplans", ITEM, f"{ITEM}/dial_info", "/v1.0/outplans/%00", "/openapi.json"]
    ),
    query=st.text(max_size=40),
    body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    key=st.binary(max_size=30),
    content_type=st.sampled_from(
        [b"application/json", b"text/plain", b"application/json; charset=\xff", b""]
    ),
)
async def test_no_input_is_a_500(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    query: str,
    body: bytes,
    key: bytes,
    content_type: bytes,
) -> None:
    headers = [
        (b"idempotency-key", key.replace(b"\r", b"").replace(b"\n", b"")),
        (b"content-type", content_type),
    ]
    url = httpx.URL(path, params={"token": TOKEN}).copy_merge_params(httpx.QueryParams(query))
    answer = await client.request(method, url, content=body, headers=headers)
    assert answer.status_code < 500, answer.text


async def test_the_callers_trace_context_is_passed_on(
    client: httpx.AsyncClient, broker: RecordingBroker
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await client.get(f"{ITEM}?token={TOKEN}", headers={"traceparent": parent, "tracestate": "vendor=x"})
    await client.get(f"{ITEM}?token={TOKEN}")
    await client.get(f"{ITEM}?token={TOKEN}", headers={"traceparent": "00-not-a-trace-01"})
    assert broker.headers == [{"traceparent": parent, "tracestate": "vendor=x"}, {}, {}]
