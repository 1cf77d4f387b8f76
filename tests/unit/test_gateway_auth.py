"""Tokens: the key decides the algorithm, exp is required and enforced, each refusal says why."""

import os
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from worker.gateway import auth
from worker.gateway.auth import KeyProblem, Unauthenticated, Verifier, mint, token_from
from worker.gateway.settings import GatewaySettings, load
from worker.settings import InvalidSettings

pytestmark = pytest.mark.unit

SECRET = "k" * 32
CUSTOMER = uuid.uuid4()


def _settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> GatewaySettings:
    for key in [k for k in os.environ if k.startswith("OUTPLAN_")]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(f"OUTPLAN_{key.upper()}", value)
    return load()


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public.decode()


def _reason(verifier: Verifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        verifier.customer(token)
    return caught.value.reason


def test_hs256_round_trip_and_each_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, jwt_secret=SECRET)
    verifier = Verifier.from_settings(settings)
    assert verifier.algorithms == ["HS256"]
    assert verifier.customer(mint(settings, CUSTOMER)) == CUSTOMER
    assert _reason(verifier, mint(settings, CUSTOMER, ttl=10, now=time.time() - 60)) == auth.TOKEN_EXPIRED
    forged = jwt.encode({"customer_id": str(CUSTOMER), "exp": time.time() + 60}, "f" * 32, algorithm="HS256")
    assert _reason(verifier, forged) == auth.TOKEN_BAD_SIGNATURE
    assert _reason(verifier, "a.b") == auth.TOKEN_MALFORMED
    no_exp = jwt.encode({"customer_id": str(CUSTOMER)}, SECRET, algorithm="HS256")
    assert _reason(verifier, no_exp) == auth.TOKEN_CLAIMS_INVALID
    no_claim = jwt.encode({"exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert _reason(verifier, no_claim) == auth.TOKEN_CLAIMS_INVALID
    not_uuid = jwt.encode({"customer_id": "alice", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert _reason(verifier, not_uuid) == auth.TOKEN_CLAIMS_INVALID
    numeric = jwt.encode({"customer_id": 7, "exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert _reason(verifier, numeric) == auth.TOKEN_CLAIMS_INVALID
    hs512 = jwt.encode({"customer_id": str(CUSTOMER), "exp": time.time() + 60}, SECRET * 2, algorithm="HS512")
    assert _reason(verifier, hs512) == auth.TOKEN_ALGORITHM_REFUSED


def test_the_claim_name_audience_and_issuer_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch, jwt_secret=SECRET, jwt_customer_claim="tenant", jwt_audience="outplans", jwt_issuer="me"
    )
    verifier = Verifier.from_settings(settings)
    minted = mint(settings, CUSTOMER)
    assert jwt.decode(minted, options={"verify_signature": False})["tenant"] == str(CUSTOMER)
    assert verifier.customer(minted) == CUSTOMER
    exp = time.time() + 60
    other_aud = jwt.encode({"tenant": str(CUSTOMER), "exp": exp, "aud": "x", "iss": "me"}, SECRET, "HS256")
    assert _reason(verifier, other_aud) == auth.TOKEN_CLAIMS_INVALID
    no_iss = jwt.encode({"tenant": str(CUSTOMER), "exp": exp, "aud": "outplans"}, SECRET, "HS256")
    assert _reason(verifier, no_iss) == auth.TOKEN_CLAIMS_INVALID


def test_an_audience_in_the_token_is_ignored_when_none_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = Verifier.from_settings(_settings(monkeypatch, jwt_secret=SECRET))
    token = jwt.encode({"customer_id": str(CUSTOMER), "exp": time.time() + 60, "aud": "any"}, SECRET, "HS256")
    assert verifier.customer(token) == CUSTOMER


def test_the_public_key_decides_rs256_or_es256(monkeypatch: pytest.MonkeyPatch) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    claims = {"customer_id": str(CUSTOMER), "exp": time.time() + 60}
    rs = Verifier.from_settings(_settings(monkeypatch, jwt_public_key=_pem(rsa_key)))
    assert rs.algorithms == ["RS256"]
    assert rs.customer(jwt.encode(claims, rsa_key, algorithm="RS256")) == CUSTOMER
    es = Verifier.from_settings(_settings(monkeypatch, jwt_public_key=_pem(ec_key)))
    assert es.algorithms == ["ES256"]
    assert es.customer(jwt.encode(claims, ec_key, algorithm="ES256")) == CUSTOMER
    # The public key used as an HMAC secret (algorithm confusion) is refused: HS256 is not accepted.
    confused = jwt.encode(claims, "x" * 32, algorithm="HS256")
    assert _reason(rs, confused) == auth.TOKEN_ALGORITHM_REFUSED
    both = Verifier.from_settings(_settings(monkeypatch, jwt_secret=SECRET, jwt_public_key=_pem(rsa_key)))
    assert both.algorithms == ["HS256", "RS256"]


def test_a_pem_file_path_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_text(_pem(key))
    assert Verifier.from_settings(_settings(monkeypatch, jwt_public_key=str(path))).algorithms == ["ES256"]
    with pytest.raises(InvalidSettings) as caught:
        _settings(monkeypatch, jwt_public_key=str(path) + ".missing")
    assert caught.value.lines[0].startswith("OUTPLAN_JWT_PUBLIC_KEY: ")


def test_unusable_keys_are_refused_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyProblem, match="OUTPLAN_JWT_SECRET"):
        Verifier.from_settings(_settings(monkeypatch))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyProblem, match="2048"):
        Verifier.from_settings(_settings(monkeypatch, jwt_public_key=_pem(small)))
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(KeyProblem, match="P-256"):
        Verifier.from_settings(_settings(monkeypatch, jwt_public_key=_pem(p384)))
    with pytest.raises(InvalidSettings) as caught:
        _settings(monkeypatch, jwt_secret="short")
    assert caught.value.lines[0].startswith("OUTPLAN_JWT_SECRET: ") and "32" in caught.value.lines[0]
    assert "short" not in caught.value.lines[0]  # the value is a secret: never echoed


def test_minting_needs_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(KeyProblem, match="OUTPLAN_JWT_SECRET"):
        mint(_settings(monkeypatch, jwt_public_key=_pem(key)), CUSTOMER)
    settings = _settings(monkeypatch, jwt_secret=SECRET, token_ttl_seconds="60")
    claims = jwt.decode(mint(settings, CUSTOMER, now=1000.0), options={"verify_signature": False})
    assert (claims["iat"], claims["exp"]) == (1000, 1060)


def test_the_token_comes_from_the_query_or_the_bearer_header_once() -> None:
    assert token_from("abc", None) == "abc"
    assert token_from(None, "Bearer xyz") == "xyz"
    assert token_from(None, "bearer   xyz ") == "xyz"
    for query, header, reason in (
        (None, None, auth.TOKEN_MISSING),
        ("", None, auth.TOKEN_MISSING),
        (None, "Basic dXNlcjpwdw==", auth.TOKEN_MISSING),
        (None, "Bearer ", auth.TOKEN_MISSING),
        ("abc", "Bearer xyz", auth.TOKEN_TWICE),
    ):
        with pytest.raises(Unauthenticated) as caught:
            token_from(query, header)
        assert caught.value.reason == reason, (query, header)


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, jwt_secret=SECRET)
    verifier = Verifier.from_settings(settings)
    now = time.time()
    token = mint(settings, CUSTOMER, ttl=60, now=now)
    assert verifier.customer(token) == CUSTOMER
    assert verifier.customer(token) == CUSTOMER  # remembered
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert _reason(verifier, token) == auth.TOKEN_EXPIRED
    assert token not in verifier._verified  # forgotten: the next use is verified from scratch


def test_refused_tokens_are_not_remembered_and_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, jwt_secret=SECRET)
    verifier = Verifier.from_settings(settings)
    forged = jwt.encode({"customer_id": str(CUSTOMER), "exp": time.time() + 60}, "f" * 32, algorithm="HS256")
    for _ in range(2):
        assert _reason(verifier, forged) == auth.TOKEN_BAD_SIGNATURE
    monkeypatch.setattr(auth, "VERIFIED_CACHE_SIZE", 3)
    tokens = [mint(settings, uuid.uuid4(), ttl=60 + i) for i in range(5)]
    for token in tokens:
        verifier.customer(token)
    assert list(verifier._verified) == tokens[2:]


def test_the_broker_url_may_list_the_nodes_of_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    urls = "amqp://u:p@a:5672/, amqp://u:p@b:5672/"
    assert _settings(monkeypatch, jwt_secret=SECRET, amqp_url=urls).amqp_urls == [
        "amqp://u:p@a:5672/",
        "amqp://u:p@b:5672/",
    ]
    with pytest.raises(InvalidSettings) as caught:
        _settings(monkeypatch, jwt_secret=SECRET, amqp_url="amqp://u:secret@a/,")
    assert caught.value.lines[0].startswith("OUTPLAN_AMQP_URL: ") and "secret" not in caught.value.lines[0]
