"""``outplanctl token`` mints only with the configured secret; ``outplan-worker gateway`` will not
start without a key to verify tokens with."""

import os
import uuid

import jwt
import pytest

from worker.entrypoints import cli, ctl

pytestmark = pytest.mark.unit

SECRET = "t" * 32


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("OUTPLAN_")]:
        monkeypatch.delenv(key)


def test_token_is_refused_clearly_without_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["--customer-id", str(uuid.uuid4()), "token"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "OUTPLAN_JWT_SECRET" in captured.err and len(captured.err.splitlines()) == 1


def test_token_is_minted_with_the_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OUTPLAN_JWT_SECRET", SECRET)
    customer = uuid.uuid4()
    assert ctl.main(["--customer-id", str(customer), "token", "--ttl", "120"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["customer_id"] == str(customer) and claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize(
    "argv", [["--customer-id", "alice", "token"], ["--customer-id", str(uuid.uuid4()), "token", "--ttl", "0"]]
)
def test_token_arguments_are_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.setenv("OUTPLAN_JWT_SECRET", SECRET)
    assert ctl.main(argv) == 2
    assert capsys.readouterr().out == ""


def test_the_gateway_needs_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gateway"]) == 78


def test_the_gateway_refuses_a_short_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OUTPLAN_JWT_SECRET", "short")
    assert cli.main(["gateway"]) == 2
    assert "OUTPLAN_JWT_SECRET" in capsys.readouterr().err
