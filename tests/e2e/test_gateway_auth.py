"""Who is asking comes from the token alone: 401s that say why, 403 for a body naming another
customer, 404 for another customer's outplan; HS256, RS256 and ES256 keys. And the caller's trace
context goes on with the command."""

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator

import jwt
import pytest
from aio_pika.abc import AbstractRobustConnection
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from contracts import names
from tests.e2e.test_client_trace_context import copies, copy_for
from tests.support.gateways import SECRET, GatewayProcess, curl, start_gateway, token
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.e2e

CREATE = '{"name": "mine", "source": {"type": "tel", "target": "+15559876543"}}'
JSON = ["--header", "Content-Type: application/json"]


def _pem(private: PrivateKeyTypes) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def gateway(worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """HS256 with the test secret and RS256 with a public key: both verified by one gateway."""
    running = start_gateway(worker.names, tmp_path_factory.mktemp("gateway"), jwt_public_key=_pem(RSA_KEY))
    yield running
    assert running.stop() == 0, running.log()


def create(gateway: GatewayProcess, customer_id: uuid.UUID) -> str:
    made = curl(
        [
            "--request",
            "POST",
            f"{gateway.base}/v1.0/outplans?token={token(customer_id)}",
            *JSON,
            "--data-raw",
            CREATE,
        ]
    )
    assert made.status == 201, made.body
    outplan_id: str = made.json()["id"]
    return outplan_id


def test_no_token_is_a_401_that_says_so(gateway: GatewayProcess) -> None:
    answer = curl([f"{gateway.base}/v1.0/outplans"])
    assert answer.status == 401
    assert answer.json()["reason"] == "TOKEN_MISSING" and answer.json()["status"] == "UNAUTHENTICATED"
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_an_expired_token_is_a_401_that_says_so(gateway: GatewayProcess) -> None:
    answer = curl([f"{gateway.base}/v1.0/outplans?token={token(uuid.uuid4(), seconds=-5)}"])
    assert (answer.status, answer.json()["reason"]) == (401, "TOKEN_EXPIRED")
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def test_a_forged_signature_is_a_401_that_says_so(gateway: GatewayProcess) -> None:
    forged = token(uuid.uuid4(), key="another-secret-of-enough-length-" + "y" * 10)
    answer = curl([f"{gateway.base}/v1.0/outplans?token={forged}"])
    assert (answer.status, answer.json()["reason"]) == (401, "TOKEN_BAD_SIGNATURE")
    header, claims, signature = token(uuid.uuid4()).split(".")
    _, other_claims, _ = token(uuid.uuid4()).split(".")
    swapped = curl([f"{gateway.base}/v1.0/outplans?token={header}.{other_claims}.{signature}"])
    assert (swapped.status, swapped.json()["reason"]) == (401, "TOKEN_BAD_SIGNATURE")


def test_a_token_that_is_not_a_jwt_or_lacks_exp_is_refused(gateway: GatewayProcess) -> None:
    garbage = curl([f"{gateway.base}/v1.0/outplans?token=not.a.jwt"])
    assert (garbage.status, garbage.json()["reason"]) == (401, "TOKEN_MALFORMED")
    endless = jwt.encode({"customer_id": str(uuid.uuid4())}, SECRET, algorithm="HS256")
    no_exp = curl([f"{gateway.base}/v1.0/outplans?token={endless}"])
    assert (no_exp.status, no_exp.json()["reason"]) == (401, "TOKEN_CLAIMS_INVALID")
    assert "exp" in no_exp.json()["message"]
    # A token that names no signature at all ("alg": "none", RFC 7519 §6): built by hand.
    unsigned = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in ({"alg": "none", "typ": "JWT"}, {"customer_id": str(uuid.uuid4()), "exp": 2**40})
        )
        + "."
    )
    refused = curl([f"{gateway.base}/v1.0/outplans?token={unsigned}"])
    assert (refused.status, refused.json()["reason"]) == (401, "TOKEN_ALGORITHM_REFUSED")


def test_another_customers_outplan_is_not_found(gateway: GatewayProcess) -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    outplan_id = create(gateway, owner)
    theirs = token(other)
    url = f"{gateway.base}/v1.0/outplans/{outplan_id}?token={theirs}"
    for argv in (
        [url],
        ["--request", "PUT", url, *JSON, "--data-raw", '{"name": "taken", "detail": ""}'],
        ["--request", "DELETE", url],
    ):
        answer = curl(argv)
        assert (answer.status, answer.json()["reason"]) == (404, "OUTPLAN_NOT_FOUND"), argv
    assert curl([f"{gateway.base}/v1.0/outplans?token={theirs}"]).json()["result"] == []
    mine = curl([f"{gateway.base}/v1.0/outplans/{outplan_id}?token={token(owner)}"]).json()
    assert mine["name"] == "mine" and mine["tm_delete"] == "9999-01-01 00:00:00.000000"


def test_a_body_naming_another_customer_is_a_403_and_changes_nothing(gateway: GatewayProcess) -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    body = CREATE[:-1] + f', "customer_id": "{other}"}}'
    answer = curl(
        ["--request", "POST", f"{gateway.base}/v1.0/outplans?token={token(mine)}", *JSON, "--data-raw", body]
    )
    assert (answer.status, answer.json()["reason"]) == (403, "CUSTOMER_MISMATCH")
    assert answer.json()["status"] == "PERMISSION_DENIED"
    assert [d["field"] for d in answer.json()["details"]] == ["customer_id"]
    for customer in (mine, other):
        assert curl([f"{gateway.base}/v1.0/outplans?token={token(customer)}"]).json()["result"] == []
    own = CREATE[:-1] + f', "customer_id": "{str(mine).upper()}"}}'  # one's own, in any spelling, is fine
    accepted = curl(
        ["--request", "POST", f"{gateway.base}/v1.0/outplans?token={token(mine)}", *JSON, "--data-raw", own]
    )
    assert accepted.status == 201, accepted.body


def test_rs256_by_bearer_header(gateway: GatewayProcess) -> None:
    customer = uuid.uuid4()
    outplan_id = create(gateway, customer)
    signed = token(customer, key=RSA_KEY, algorithm="RS256")
    answer = curl(
        [f"{gateway.base}/v1.0/outplans/{outplan_id}", "--header", f"Authorization: Bearer {signed}"]
    )
    assert answer.status == 200 and answer.json()["id"] == outplan_id
    both = curl(
        [f"{gateway.base}/v1.0/outplans?token={signed}", "--header", f"Authorization: Bearer {signed}"]
    )
    assert (both.status, both.json()["reason"]) == (400, "TOKEN_TWICE")
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = curl(
        [
            f"{gateway.base}/v1.0/outplans",
            "--header",
            f"Authorization: Bearer {token(customer, key=other_rsa, algorithm='RS256')}",
        ]
    )
    assert (forged.status, forged.json()["reason"]) == (401, "TOKEN_BAD_SIGNATURE")


def test_es256_alone(worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> None:
    gateway = start_gateway(
        worker.names, tmp_path_factory.mktemp("gateway-es256"), jwt_secret="", jwt_public_key=_pem(EC_KEY)
    )
    try:
        customer = uuid.uuid4()
        signed = token(customer, key=EC_KEY, algorithm="ES256")
        answer = curl([f"{gateway.base}/v1.0/outplans", "--header", f"Authorization: Bearer {signed}"])
        assert answer.status == 200 and answer.json() == {"result": [], "next_page_token": ""}
        hs = curl([f"{gateway.base}/v1.0/outplans?token={token(customer)}"])
        assert (hs.status, hs.json()["reason"]) == (401, "TOKEN_ALGORITHM_REFUSED")
    finally:
        assert gateway.stop() == 0, gateway.log()


async def test_the_callers_trace_context_reaches_the_broker_with_the_command(
    gateway: GatewayProcess, worker: WorkerProcess, connection: AbstractRobustConnection
) -> None:
    queue = await copies(connection, worker, names.LIST)  # a copy of each list command, as the worker gets it
    customer = uuid.uuid4()
    traced = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    answer = await asyncio.to_thread(
        curl,
        [f"{gateway.base}/v1.0/outplans?token={token(customer)}", "--header", f"traceparent: {traced}"],
    )
    assert answer.status == 200
    message = await copy_for(queue, str(customer))
    assert message.headers.get("traceparent") == traced
    untraced = uuid.uuid4()
    assert (
        await asyncio.to_thread(curl, [f"{gateway.base}/v1.0/outplans?token={token(untraced)}"])
    ).status == 200
    assert "traceparent" not in ((await copy_for(queue, str(untraced))).headers or {})
