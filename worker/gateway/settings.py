"""The gateway's settings, read from ``OUTPLAN_*`` environment variables (pydantic-settings).

The broker settings (``OUTPLAN_AMQP_URL``, ``OUTPLAN_COMMAND_EXCHANGE``) have the worker's names and
defaults, so a gateway and a worker started side by side with the same environment talk to each
other; the ports differ by default (the gateway 8080, the worker's health port 9464).
"""

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts import names

from ..settings import ENV_PREFIX, LogLevel, from_environment, split_amqp_urls

HS256_SECRET_MIN_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output (256 bits)
PEM_BEGIN = "-----BEGIN "


def _amqp_url(value: SecretStr) -> SecretStr:
    try:
        split_amqp_urls(value.get_secret_value())
    except ValueError as exc:
        raise PydanticCustomError("amqp_url", "{rule}", {"rule": str(exc)}) from None
    return value


def _secret(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value():
        return None  # an empty variable is no secret, as if unset
    if len(value.get_secret_value().encode()) < HS256_SECRET_MIN_BYTES:
        raise PydanticCustomError(
            "jwt_secret",
            "must be at least {least} bytes: RFC 7518 §3.2 wants an HS256 key as long as its hash "
            "(256 bits); `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` makes one",
            {"least": HS256_SECRET_MIN_BYTES},
        )
    return value


def _public_key(value: str | None) -> str | None:
    """The PEM text itself, or the path of a file holding it (read here, once, at start)."""
    if value is None or not value.strip():
        return None
    if value.lstrip().startswith(PEM_BEGIN):
        return value
    try:
        text = Path(value).read_text()
    except (OSError, ValueError) as exc:
        raise PydanticCustomError(
            "jwt_public_key",
            "must be a PEM public key (-----BEGIN PUBLIC KEY----- ...) or the path of a file holding "
            "one; the file cannot be read: {error}",
            {"error": type(exc).__name__},
        ) from None
    if not text.lstrip().startswith(PEM_BEGIN):
        raise PydanticCustomError("jwt_public_key", "the file does not hold a PEM (-----BEGIN ...)")
    return text


class GatewaySettings(BaseSettings):
    """The gateway's configuration: each field ``x`` from ``OUTPLAN_X`` (any case), else its default.

    ``amqp_url`` is one AMQP URI or several, comma-separated, for the nodes of one cluster, as the
    worker reads it: the gateway connects to the first that answers and, when the connection is
    lost, tries them in order again. ``gateway_port`` (TCP) serves the API, ``/openapi.json``,
    ``/livez``, ``/readyz`` and ``/metrics``; ``gateway_timeout_seconds`` is how long a reply is
    awaited (s) before a 504.
    Tokens are verified with ``jwt_secret`` (HS256, at least 32 bytes) and/or ``jwt_public_key``
    (a PEM, or the path of one: an RSA key verifies RS256, a P-256 key ES256); at least one is
    required. ``jwt_customer_claim`` names the claim holding the customer id (a UUID);
    ``jwt_audience`` and ``jwt_issuer``, when set, must match the token's ``aud`` and ``iss``;
    ``jwt_leeway_seconds`` is the clock skew allowed on ``exp``/``nbf``/``iat`` (s).
    ``token_ttl_seconds`` is the lifetime of a token ``outplanctl token`` mints. Build it with
    ``load()``.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    amqp_url: Annotated[SecretStr, AfterValidator(_amqp_url)] = SecretStr(
        "amqp://guest:guest@127.0.0.1:5672/"
    )
    command_exchange: str = names.COMMAND_EXCHANGE
    log_level: LogLevel = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL, in any case")
    uvloop: bool = Field(True, description="run the gateway on uvloop")

    gateway_host: str = "0.0.0.0"
    gateway_port: int = Field(8080, ge=0, le=65535, description="HTTP port of the gateway; 0: any free one")
    gateway_timeout_seconds: float = Field(10.0, gt=0, le=300, description="reply wait (s) before a 504")

    jwt_secret: Annotated[SecretStr | None, AfterValidator(_secret)] = None
    jwt_public_key: Annotated[str | None, AfterValidator(_public_key)] = None
    jwt_customer_claim: str = Field("customer_id", min_length=1)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: float = Field(0.0, ge=0, le=300)
    token_ttl_seconds: int = Field(3600, ge=1, le=86400, description="lifetime of a minted token (s)")

    @property
    def amqp_urls(self) -> list[str]:
        """The brokers of ``amqp_url`` (one, or several comma-separated nodes of one cluster), in
        order, with credentials: never log them."""
        return split_amqp_urls(self.amqp_url.get_secret_value())

    def verifies_tokens(self) -> bool:
        """Whether a key to verify tokens with is configured (``jwt_secret`` or ``jwt_public_key``)."""
        return self.jwt_secret is not None or self.jwt_public_key is not None


def load() -> GatewaySettings:
    """The gateway's settings from the environment; raises ``InvalidSettings`` naming each bad
    variable (``worker.settings.from_environment``)."""
    return from_environment(GatewaySettings)
