"""The tutorial's curl commands, run as written with real curl against a gateway and a worker.

Only the host, the token and the outplan ids of ``tests/data/outplan-tutorial.rst`` are
substituted; every answer has the keys and value types of the tutorial's example, and the values
that were sent.
"""

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateways import (
    TUTORIAL_HOST,
    TUTORIAL_TOKEN,
    Example,
    GatewayProcess,
    curl,
    start_gateway,
    tutorial_examples,
)
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.e2e

TUTORIAL_IDS = ("d5fb7357-7ddb-4f2d-87b5-8ccbfd6c039e", "88334a03-bc6b-40b6-878f-46df2d9865db")
LIVE = "9999-01-01 00:00:00.000000"


@pytest.fixture(scope="module")
def gateway(worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    running = start_gateway(worker.names, tmp_path_factory.mktemp("gateway"))
    yield running
    assert running.stop() == 0, running.log()


def examples() -> dict[str, Example]:
    return {example.title: example for example in tutorial_examples()}


def minted(gateway: GatewayProcess, customer_id: uuid.UUID) -> str:
    """A token from ``outplanctl token``, as the README has the reader get one."""
    ctl = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / "outplanctl"
    script = str(ctl) if ctl.exists() else str(Path(__import__("sys").executable).parent / "outplanctl")
    result = subprocess.run(
        [script, "--customer-id", str(customer_id), "token"],
        env=gateway.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def as_run(example: Example, gateway: GatewayProcess, token: str, outplan_id: str = "") -> list[str]:
    """The example's curl arguments with the host, the token and the ids substituted, nothing else."""
    argv = []
    for arg in example.argv:
        arg = arg.replace(TUTORIAL_HOST, gateway.base).replace(TUTORIAL_TOKEN, token)
        for tutorial_id in TUTORIAL_IDS:
            arg = arg.replace(tutorial_id, outplan_id)
        argv.append(arg)
    return argv


def sent_body(example: Example) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(example.argv[example.argv.index("--data-raw") + 1])
    return body


def same_shape(actual: Any, example: Any, where: str = "") -> None:
    """``actual`` has ``example``'s keys (recursively) and the same JSON types."""
    assert type(actual) is type(example), f"{where or 'the body'}: {actual!r} is not like {example!r}"
    if isinstance(example, dict):
        assert set(actual) == set(example), (
            f"{where or 'the body'}: keys {sorted(actual)} != {sorted(example)}"
        )
        for key in example:
            same_shape(actual[key], example[key], f"{where}.{key}".lstrip("."))
    elif isinstance(example, list) and example and actual:
        for i, item in enumerate(actual):
            same_shape(item, example[0], f"{where}.{i}")


def has_sent(outplan: dict[str, Any], body: dict[str, Any]) -> None:
    """Every value of the request body is in the outplan (the source's sent fields included)."""
    for key, value in body.items():
        if isinstance(value, dict):
            assert {k: outplan[key][k] for k in value} == value, key
        else:
            assert outplan[key] == value, key


def test_the_tutorials_six_calls_answer_as_its_examples(gateway: GatewayProcess) -> None:
    tutorial = examples()
    customer_id = uuid.uuid4()
    token = minted(gateway, customer_id)
    detail_example = tutorial["Get detail of outplan"].response

    create = tutorial["Create a new outplan"]
    created = curl(as_run(create, gateway, token))
    assert created.status == 201, created.body
    assert created.headers["content-type"] == "application/json"
    outplan = created.json()
    same_shape(outplan, detail_example)  # the tutorial shows no answer to a create: it is the outplan
    has_sent(outplan, sent_body(create))
    assert outplan["tm_delete"] == LIVE and outplan["tm_update"] == outplan["tm_create"]
    outplan_id = outplan["id"]

    listed = curl(as_run(tutorial["Get list of outplans"], gateway, token))
    assert listed.status == 200, listed.body
    same_shape(listed.json(), tutorial["Get list of outplans"].response)
    assert listed.json() == {"result": [outplan], "next_page_token": ""}

    got = curl(as_run(tutorial["Get detail of outplan"], gateway, token, outplan_id))
    assert got.status == 200, got.body
    same_shape(got.json(), detail_example)
    assert got.json() == outplan

    dial = tutorial["Update outplan's dial info"]
    dialled = curl(as_run(dial, gateway, token, outplan_id))
    assert dialled.status == 200, dialled.body
    same_shape(dialled.json(), detail_example)
    has_sent(dialled.json(), sent_body(dial))
    assert dialled.json()["try_interval"] == 60000 != outplan["try_interval"]

    basic = tutorial["Update outplan's basic info"]
    renamed = curl(as_run(basic, gateway, token, outplan_id))
    assert renamed.status == 200, renamed.body
    same_shape(renamed.json(), basic.response)
    has_sent(renamed.json(), sent_body(basic))
    assert renamed.json()["tm_update"] > dialled.json()["tm_update"] > outplan["tm_update"]

    deleted = curl(as_run(tutorial["Delete outplan"], gateway, token, outplan_id))
    assert deleted.status == 200, deleted.body
    same_shape(deleted.json(), detail_example)
    assert deleted.json()["id"] == outplan_id and deleted.json()["tm_delete"] != LIVE

    gone = curl(as_run(tutorial["Get detail of outplan"], gateway, token, outplan_id))
    assert (gone.status, gone.json()["reason"]) == (404, "OUTPLAN_NOT_FOUND")


def test_seconds_for_milliseconds_get_the_tutorials_hint(gateway: GatewayProcess) -> None:
    tutorial = examples()
    token = minted(gateway, uuid.uuid4())
    created = curl(as_run(tutorial["Create a new outplan"], gateway, token)).json()
    dial = tutorial["Update outplan's dial info"]
    argv = as_run(dial, gateway, token, created["id"])
    at = argv.index("--data-raw") + 1
    argv[at] = json.dumps({**json.loads(argv[at]), "dial_timeout": 30})
    refused = curl(argv)
    assert refused.status == 400
    error = refused.json()
    assert (error["status"], error["reason"]) == ("INVALID_ARGUMENT", "VALIDATION_FAILED")
    assert "milliseconds" in error["message"] and "30000" in error["message"]
    assert [d["field"] for d in error["details"]] == ["dial_timeout"]
    unchanged = curl(as_run(tutorial["Get detail of outplan"], gateway, token, created["id"])).json()
    assert unchanged == created


def test_paging_through_the_list(gateway: GatewayProcess) -> None:
    tutorial = examples()
    token = minted(gateway, uuid.uuid4())
    ids = [curl(as_run(tutorial["Create a new outplan"], gateway, token)).json()["id"] for _ in range(3)]
    seen: list[str] = []
    page_token = ""
    for _ in range(4):
        url = f"{gateway.base}/v1.0/outplans?token={token}&page_size=2&page_token={page_token}"
        page = curl([url]).json()
        seen += [o["id"] for o in page["result"]]
        page_token = page["next_page_token"]
        if not page_token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 3
    too_many = curl([f"{gateway.base}/v1.0/outplans?token={token}&page_size=101"])
    assert too_many.status == 400 and [d["field"] for d in too_many.json()["details"]] == ["page_size"]


def test_an_idempotency_key_makes_a_retried_post_one_outplan(gateway: GatewayProcess) -> None:
    tutorial = examples()
    token = minted(gateway, uuid.uuid4())
    argv = as_run(tutorial["Create a new outplan"], gateway, token)
    key = str(uuid.uuid4())
    first = curl([*argv, "--header", f"Idempotency-Key: {key}"])
    again = curl([*argv, "--header", f"Idempotency-Key: {key}"])
    assert (first.status, again.status) == (201, 201)
    assert first.json() == again.json()
    without = [curl(argv).json()["id"] for _ in range(2)]  # no key: each request is a new create
    listed = curl([f"{gateway.base}/v1.0/outplans?token={token}"]).json()["result"]
    assert sorted(o["id"] for o in listed) == sorted([first.json()["id"], *without])
    changed = curl(
        [
            *argv[:-1],
            json.dumps({**sent_body(tutorial["Create a new outplan"]), "name": "other"}),
            "--header",
            f"Idempotency-Key: {key}",
        ]
    )
    assert (changed.status, changed.json()["reason"]) == (409, "IDEMPOTENCY_KEY_REUSED")


def test_malformed_json_is_a_400_naming_the_problem(gateway: GatewayProcess) -> None:
    token = minted(gateway, uuid.uuid4())
    url = f"{gateway.base}/v1.0/outplans?token={token}"
    json_header = ["--header", "Content-Type: application/json"]
    broken = curl(["--request", "POST", url, *json_header, "--data-raw", '{"name": "x",'])
    assert (broken.status, broken.json()["reason"]) == (400, "MALFORMED_JSON")
    twice = curl(["--request", "POST", url, *json_header, "--data-raw", '{"name": "a", "name": "b"}'])
    assert (twice.status, twice.json()["reason"]) == (400, "MALFORMED_JSON")
    assert [d["field"] for d in twice.json()["details"]] == ["name"]
    listed = curl(["--request", "POST", url, *json_header, "--data-raw", "[1]"])
    assert (listed.status, listed.json()["reason"]) == (400, "NOT_AN_OBJECT")
    form = curl(["--request", "POST", url, "--data-raw", '{"name": "x"}'])  # curl's default: a form
    assert (form.status, form.json()["reason"]) == (415, "UNSUPPORTED_CONTENT_TYPE")
    unknown = curl([f"{gateway.base}/v1.0/outplans?token={token}&page=2"])
    assert unknown.status == 400 and [d["field"] for d in unknown.json()["details"]] == ["page"]
    not_uuid = curl([f"{gateway.base}/v1.0/outplans/not-a-uuid?token={token}"])
    assert not_uuid.status == 400 and [d["field"] for d in not_uuid.json()["details"]] == ["id"]
