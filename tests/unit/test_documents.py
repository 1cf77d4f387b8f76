"""The contract as documents: the committed AsyncAPI YAML is current, valid AsyncAPI 3.0.0 and
self-contained, and the JSON Schemas refuse what the models refuse."""

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from contracts import COMMANDS, names
from contracts.documents import EVENTS, asyncapi, json_schemas
from tests.support.commands import CUSTOMER, SOURCE
from worker.schema_docs import render_asyncapi_yaml, write_documents

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_YAML = ROOT / "contracts" / "asyncapi.yaml"
ASYNCAPI_3_0_0 = ROOT / "tests" / "data" / "asyncapi-3.0.0.schema.json"
REGENERATE = (
    '.venv/bin/python -c "from pathlib import Path; from worker.schema_docs import render_asyncapi_yaml; '
    "Path('contracts/asyncapi.yaml').write_text(render_asyncapi_yaml())\""
)

OUTPLAN = "0b8f3a52-8d7e-4a0c-9f3e-6d2b1c0a9e87"
VALID: dict[str, dict[str, Any]] = {
    names.CREATE: {"customer_id": CUSTOMER, "source": SOURCE, "dial_timeout": 30000},
    names.UPDATE_BASIC_INFO: {"customer_id": CUSTOMER, "id": OUTPLAN, "name": "n", "detail": "d"},
    names.UPDATE_DIAL_INFO: {
        "customer_id": CUSTOMER,
        "id": OUTPLAN,
        "source": SOURCE,
        "dial_timeout": 30000,
        "try_interval": 60000,
        **{f"max_try_count_{i}": 5 for i in range(5)},
    },
    names.DELETE: {"customer_id": CUSTOMER, "id": OUTPLAN},
    names.GET: {"customer_id": CUSTOMER, "id": OUTPLAN},
    names.LIST: {"customer_id": CUSTOMER, "page_size": 10},
}
# One integer field per command that has any, with a value just outside its declared bounds.
OUT_OF_BOUNDS = {
    names.CREATE: ("dial_timeout", 600_001),
    names.UPDATE_DIAL_INFO: ("max_try_count_0", 101),
    names.LIST: ("page_size", 0),
}


def command_verdicts(command: str, body: dict[str, Any]) -> tuple[bool, bool]:
    """Whether the model and the command's JSON Schema each accept ``body`` as it would arrive."""
    schema = json_schemas()[command]
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    try:
        COMMANDS[command].model_validate_json(json.dumps(body))
        model_accepts = True
    except ValidationError:
        model_accepts = False
    return model_accepts, validator.is_valid(body)


def test_committed_asyncapi_yaml_is_current() -> None:
    assert COMMITTED_YAML.read_text(encoding="utf-8") == render_asyncapi_yaml(), (
        f"contracts/asyncapi.yaml no longer matches the contracts; regenerate it with\n  {REGENERATE}"
    )


def test_yaml_reads_back_as_the_document() -> None:
    # Guards against YAML retyping a value, e.g. a version "1.0" read back as a float.
    assert yaml.safe_load(render_asyncapi_yaml()) == asyncapi()


def test_document_is_valid_asyncapi_3_0_0() -> None:
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_3_0_0.read_text(encoding="utf-8")))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(asyncapi())]
    assert errors == []
    # The bundled schema checks the AMQP bindings too, so the check above is not vacuous.
    broken = asyncapi()
    broken["operations"][names.OUTPLAN_CREATED]["bindings"]["amqp"]["deliveryMode"] = 3
    assert not validator.is_valid(broken)


def test_every_ref_resolves_inside_the_document() -> None:
    document = asyncapi()
    refs: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend(value for key, value in node.items() if key == "$ref")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(target, dict) and part in target, f"{ref} does not resolve"
            target = target[part]


def test_document_describes_every_command_and_event_on_the_configured_names() -> None:
    document = asyncapi(command_exchange="acme.commands", event_exchange="acme.events")
    for command, model in COMMANDS.items():
        operation = document["operations"][command]
        assert operation["action"] == "receive" and "reply" in operation
        assert document["channels"][command]["bindings"]["amqp"]["exchange"]["name"] == "acme.commands"
        payload = document["components"]["messages"][command]["payload"]["$ref"]
        assert payload == f"#/components/schemas/{model.__name__}"
    for event_type, event_model in EVENTS.items():
        assert document["operations"][event_type]["bindings"]["amqp"]["deliveryMode"] == 2
        assert document["channels"][event_type]["bindings"]["amqp"]["exchange"]["name"] == "acme.events"
        payload = document["components"]["messages"][event_type]["payload"]["$ref"]
        assert payload == f"#/components/schemas/{event_model.__name__}"


def test_event_channels_say_what_the_relay_does_with_an_event_nobody_binds() -> None:
    # As the README says and the relay does: an unrouted event is counted and settled, never
    # retried; only an event a queue refuses is published again, then left to replay.
    for event_type in EVENTS:
        description = asyncapi()["channels"][event_type]["description"]
        assert "no binding matches is counted and dropped, never retried" in description, description
        assert "refuses (basic.nack) is published again up to 5 times" in description, description
        assert "held back" not in description


@pytest.mark.parametrize("command", COMMANDS)
def test_command_schema_refuses_what_the_model_refuses(command: str) -> None:
    body = VALID[command]
    assert command_verdicts(command, body) == (True, True)
    refused = [
        {**body, "colour": "red"},  # unknown fields
        {**body, "customer_id": "42"},  # not a UUID
    ]
    if command in OUT_OF_BOUNDS:
        field, beyond = OUT_OF_BOUNDS[command]
        refused += [{**body, field: beyond}, {**body, field: str(body.get(field, 5))}, {**body, field: True}]
    for candidate in refused:
        assert command_verdicts(command, candidate) == (False, False), candidate


def test_command_schema_refuses_seconds_for_milliseconds() -> None:
    assert command_verdicts(names.CREATE, {**VALID[names.CREATE], "dial_timeout": 30}) == (False, False)


def test_write_documents(tmp_path: Path) -> None:
    written = write_documents(tmp_path / "docs")
    schemas = json_schemas()
    assert {path.name for path in written} == {"asyncapi.yaml", *(f"{name}.schema.json" for name in schemas)}
    assert (tmp_path / "docs" / "asyncapi.yaml").read_text(encoding="utf-8") == render_asyncapi_yaml()
    for name, schema in schemas.items():
        assert json.loads((tmp_path / "docs" / f"{name}.schema.json").read_text(encoding="utf-8")) == schema
        jsonschema.Draft202012Validator.check_schema(schema)
