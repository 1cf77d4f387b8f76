"""What a server refuses for good is one clear sentence, never a retry: a certificate, a permission."""

import ssl

import aiormq.exceptions
import asyncpg
import pytest

from worker.app import misconfiguration
from worker.refusals import broker_refusal, certificate_refusal, database_refusal

pytestmark = pytest.mark.unit


def _verify_failed(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(
        1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}"
    )
    error.verify_message = message
    return error


def _as_aiormq_raises(cause: BaseException) -> aiormq.exceptions.AMQPConnectionError:
    """aiormq wraps the transport's OSError (an SSLError is one) in AMQPConnectionError."""
    try:
        try:
            raise cause
        except OSError as exc:
            raise aiormq.exceptions.AMQPConnectionError(*exc.args) from exc
    except aiormq.exceptions.AMQPConnectionError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    "reason",
    ["unable to get local issuer certificate", "Hostname mismatch, certificate is not valid for 'x'"],
)
def test_a_refused_broker_certificate_is_a_configuration_error_not_an_outage(reason: str) -> None:
    exc = _as_aiormq_raises(_verify_failed(reason))
    refused = misconfiguration("broker", exc)
    assert refused is not None
    assert str(refused).startswith(f"the broker's TLS certificate was refused ({reason}):")
    assert "OUTPLAN_AMQP_URL" in str(refused)


def test_a_refused_database_certificate_names_the_database_url() -> None:
    refused = misconfiguration("database", _verify_failed("self-signed certificate in certificate chain"))
    assert refused is not None and "database's TLS certificate" in str(refused)
    assert "OUTPLAN_DATABASE_URL" in str(refused)


def test_a_tls_link_cut_mid_handshake_may_heal_and_is_retried() -> None:
    assert (
        certificate_refusal("broker", "OUTPLAN_AMQP_URL", _as_aiormq_raises(ssl.SSLEOFError(8, "EOF")))
        is None
    )
    assert misconfiguration("broker", _as_aiormq_raises(ssl.SSLEOFError(8, "EOF"))) is None


def test_a_missing_root_certificate_file_is_a_configuration_error() -> None:
    exc = asyncpg.exceptions.ClientConfigurationError('root certificate file "/nope.pem" does not exist')
    refused = misconfiguration("database", exc)
    assert refused is not None and "/nope.pem" in str(refused)


@pytest.mark.parametrize(
    ("operation", "permission"),
    [
        ("exchange.declare", "configure permission on"),
        ("queue.bind", "write permission on the queue and read permission on the exchange of"),
        ("basic.consume", "read permission on"),
        ("basic.publish", "write permission on"),
    ],
)
def test_a_refused_operation_names_the_permission_it_needs(operation: str, permission: str) -> None:
    text = "ACCESS_REFUSED - access to exchange 'x' in vhost '/' refused for user 'u'"
    refused = broker_refusal(aiormq.exceptions.ChannelAccessRefused(text), operation, "exchange 'x'")
    assert refused is not None
    assert f"RabbitMQ refused {operation} on exchange 'x': it needs {permission} it" in str(refused)
    assert text in str(refused)
    assert ("OUTPLAN_TOPOLOGY=passive" in str(refused)) == (operation == "exchange.declare")


def test_other_channel_errors_are_not_permission_refusals() -> None:
    assert broker_refusal(aiormq.exceptions.ChannelNotFoundEntity("NOT_FOUND"), "basic.publish", "x") is None
    assert database_refusal(asyncpg.exceptions.UniqueViolationError("dup")) is None


def test_a_database_privilege_refused_names_the_object() -> None:
    refused = database_refusal(asyncpg.InsufficientPrivilegeError("permission denied for table outplans"))
    assert refused is not None and "permission denied for table outplans" in str(refused)
    assert "deploy/postgres/grants.sql" in str(refused)
