"""/openapi.json is a valid OpenAPI 3.1 document, generated from the contracts models, with every call."""

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from contracts import CreateOutplan, Outplan, UpdateDialInfo
from worker.gateway.openapi import document
from worker.gateway.routes import CALLS

pytestmark = pytest.mark.unit


def test_it_is_valid_openapi_3_1() -> None:
    spec = document()
    assert spec["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(spec).validate()  # raises, naming the path, when it is not


def test_the_validator_would_see_a_broken_document() -> None:
    broken = {**document(), "paths": {"/v1.0/outplans": {"get": {"responses": 5}}}}
    with pytest.raises(OpenAPIValidationError):
        OpenAPIV31SpecValidator(broken).validate()


def test_every_call_is_there_with_its_answers() -> None:
    paths = document()["paths"]
    assert {(c.method.lower(), c.path) for c in CALLS} == {
        (method, path) for path, item in paths.items() for method in item
    }
    assert len(CALLS) == 6
    create = paths["/v1.0/outplans"]["post"]
    assert set(create["responses"]) >= {"201", "400", "401", "403", "413", "503", "504"}
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    listing = paths["/v1.0/outplans"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"page_size", "page_token"}


def test_the_schemas_come_from_the_models() -> None:
    schemas = document()["components"]["schemas"]
    # The request bodies: the commands' own rules, with customer_id (and id) supplied by the call.
    create = schemas["CreateOutplan"]
    model = CreateOutplan.model_json_schema()
    assert create["properties"].keys() == model["properties"].keys()
    assert create["properties"]["dial_timeout"] == model["properties"]["dial_timeout"]
    assert "customer_id" not in create["required"] and "source" in create["required"]
    assert "id" not in schemas["UpdateDialInfo"]["required"]
    assert set(schemas["UpdateDialInfo"]["required"]) == set(
        UpdateDialInfo.model_json_schema()["required"]
    ) - {
        "customer_id",
        "id",
    }
    # The answer: the outplan as the tutorial shows it, without customer_id.
    assert set(schemas["Outplan"]["properties"]) == set(Outplan.model_fields) - {"customer_id"}


def test_the_tutorials_bodies_and_answers_match_the_schemas() -> None:
    spec = document()
    schemas = spec["components"]["schemas"]

    def validator(name: str) -> Draft202012Validator:
        return Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
        )

    body = {
        "name": "test outplan",
        "detail": "outplan for test use.",
        "source": {"type": "tel", "target": "+15559876543"},
        "dial_timeout": 30000,
        "try_interval": 600000,
        **{f"max_try_count_{i}": 5 for i in range(5)},
    }
    assert not list(validator("CreateOutplan").iter_errors(body))
    assert list(validator("CreateOutplan").iter_errors({**body, "dial_timeout": "30000"}))
    answer = {
        "id": "d5fb7357-7ddb-4f2d-87b5-8ccbfd6c039e",
        **{k: v for k, v in body.items() if k != "source"},
        "source": {"type": "tel", "target": "+15559876543", "target_name": "", "name": "", "detail": ""},
        "tm_create": "2022-04-28 01:50:23.414000",
        "tm_update": "2022-04-30 12:01:13.780469",
        "tm_delete": "9999-01-01 00:00:00.000000",
    }
    assert not list(validator("Outplan").iter_errors(answer))
    assert not list(validator("OutplanPage").iter_errors({"result": [answer], "next_page_token": ""}))
