"""One typed settings object, read from ``OUTPLAN_*`` environment variables."""

import sys
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from contracts import names

ENV_PREFIX = "OUTPLAN_"
SettingsT = TypeVar("SettingsT", bound=BaseSettings)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise PydanticCustomError(
            "log_level", "must be one of {levels} (any case)", {"levels": ", ".join(LOG_LEVELS)}
        )
    return level


def _event_source(value: str) -> str:
    """CloudEvents ``source`` (spec v1.0, "source": a non-empty URI-reference): every event body
    carries it, so a value no subscriber could read (empty, control characters, or bytes that are
    not UTF-8, which arrive as lone surrogates) is refused at start rather than at every write."""
    if not value:
        raise PydanticCustomError("event_source", "must not be empty (CloudEvents source)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("event_source", "must be valid UTF-8") from None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise PydanticCustomError("event_source", "must not contain control characters") from None
    return value


LogLevel = Annotated[str, AfterValidator(_log_level)]
"""A log level name, any case, kept upper-case; another name is refused naming the five."""


AMQP_SCHEMES = ("amqp", "amqps")


def split_amqp_urls(value: str) -> list[str]:
    """The AMQP URIs of a comma-separated list (``OUTPLAN_AMQP_URL``), in order, blanks stripped.

    One URL is a list of one. Several name the nodes of one RabbitMQ cluster (same users and
    virtual hosts): the worker connects to the first that answers and moves on to the next when a
    connection drops (``messaging.brokers``). A comma inside a URL (in a password, say) is written
    ``%2C``, as RFC 3986 percent-encoding allows.

    :raises ValueError: an entry is empty (``a,,b``, a trailing comma), is not a URL, has a scheme
        other than ``amqp`` or ``amqps``, or names no host; the message gives the entry's position
        (1-based), never its text, which may hold a password.
    """
    urls = [part.strip() for part in value.split(",")]
    for position, url in enumerate(urls, start=1):
        where = "the URL" if len(urls) == 1 else f"URL {position} of {len(urls)}"
        if not url:
            raise ValueError(f"{where} is empty (separate URLs with single commas)")
        try:
            parsed = urlsplit(url)
            parsed.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
        except ValueError:
            raise ValueError(f"{where} is not a URL (or its port is not a number in 0-65535)") from None
        if parsed.scheme not in AMQP_SCHEMES or not parsed.hostname:
            raise ValueError(f"{where} must be amqp://[user:password@]host[:port][/vhost] or amqps://…")
    return urls


def _amqp_url(value: SecretStr) -> SecretStr:
    try:
        split_amqp_urls(value.get_secret_value())
    except ValueError as exc:
        raise PydanticCustomError("amqp_url", "{rule}", {"rule": str(exc)}) from None
    return value


EXIT_USAGE = 2  # the exit status for invalid settings, as argparse's for invalid arguments


class InvalidSettings(Exception):
    """Settings that cannot be used; ``lines`` holds one line per setting: its variable and the rule."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines

    def report(self, program: str) -> int:
        """Print each line on stderr as ``<program>: invalid setting <line>``; returns ``EXIT_USAGE``
        (2), the status a command line exits with for it."""
        for line in self.lines:
            print(f"{program}: invalid setting {line}", file=sys.stderr)
        return EXIT_USAGE


class Settings(BaseSettings):
    """The worker's configuration: each field ``x`` from ``OUTPLAN_X`` (any case), else its default.

    The URLs are ``SecretStr`` (never logged or shown by ``repr``): ``amqp_url`` an AMQP URI or
    several, comma-separated, for the nodes of one cluster (``split_amqp_urls``; read them with
    ``amqp_urls``); ``database_url`` a PostgreSQL connection URI, which may list several hosts
    (``postgresql://user@h1:5432,h2:5432/outplans?target_session_attrs=read-write``: asyncpg tries
    them in order and keeps the first that takes writes; libpq's rules, which asyncpg follows).
    ``prefetch`` is the consumer's AMQP ``basic.qos`` prefetch-count (a 16-bit field, hence at most
    65535); ``db_pool_size`` the pool's connections; ``relay_batch_size`` the events of one round of
    the relay's publishes (up to four rounds await their confirms at once); ``relay_poll_seconds``
    the longest the relay waits for a commit's notification before reading the outbox anyway;
    ``drain_seconds`` the time SIGTERM gives the work in flight and the outbox;
    ``idempotency_retention_hours`` how long a ``message_id``'s idempotency record is kept (at least
    24 h). ``event_source`` is the CloudEvents ``source`` of every event. ``topology`` is ``declare`` or
    ``passive`` (``messaging.topology``); ``management_url`` (secret: it holds a password) the
    management API that passive checks compare arguments through. Build it with ``load()``.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    amqp_url: Annotated[SecretStr, AfterValidator(_amqp_url)] = SecretStr(
        "amqp://guest:guest@127.0.0.1:5672/"
    )
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/outplans")

    command_exchange: str = names.COMMAND_EXCHANGE
    command_queue: str = names.COMMAND_QUEUE
    dead_letter_exchange: str = names.DEAD_LETTER_EXCHANGE
    dead_letter_queue: str = names.DEAD_LETTER_QUEUE
    event_exchange: str = names.EVENT_EXCHANGE
    event_source: Annotated[str, AfterValidator(_event_source)] = names.EVENT_SOURCE

    prefetch: int = Field(300, ge=1, le=65535)
    batch_size: int = Field(
        100, ge=1, description="changes read and written together by one statement, at most"
    )
    batch_writers: int = Field(1, ge=1, description="batch writers: batches written side by side")
    retry_limit: int = Field(
        5, ge=1, description="deliveries of a failing command before it is dead-lettered"
    )
    queue_delivery_limit: int = Field(20, ge=1, description="the command queue's x-delivery-limit backstop")
    db_pool_size: int = Field(10, ge=1)
    relay_batch_size: int = Field(200, ge=1)
    relay_poll_seconds: float = Field(1.0, gt=0)
    idempotency_retention_hours: float = Field(72.0, ge=24.0)
    drain_seconds: float = Field(10.0, ge=0)
    log_level: LogLevel = Field(
        "INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL, in any case; kept upper-case"
    )
    uvloop: bool = Field(True, description="run the worker on uvloop")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="HTTP port for /metrics, /livez, /readyz; 0: off"
    )
    metrics_host: str = "0.0.0.0"
    ready_max_outbox_age_seconds: float = Field(30.0, gt=0, description="/readyz fails past this outbox age")
    topology: Literal["declare", "passive"] = Field(
        "declare",
        description="declare the exchanges and queues (needs configure permission), or only check"
        " them by passive declaration (an operator declared them)",
    )
    management_url: SecretStr | None = Field(
        None,
        description="RabbitMQ management API (http[s]://user:password@host:15672): when set, the"
        " queues' arguments and the exchanges' types are compared with what the worker declares",
    )

    @property
    def amqp_urls(self) -> list[str]:
        """The brokers of ``amqp_url``, in order (with credentials: never log them)."""
        return split_amqp_urls(self.amqp_url.get_secret_value())


def load() -> Settings:
    """The worker's settings from the environment; raises ``InvalidSettings`` (``from_environment``)."""
    return from_environment(Settings)


def from_environment(cls: type[SettingsT]) -> SettingsT:
    """An instance of ``cls`` (a settings class reading ``OUTPLAN_*`` variables) from the environment.

    :raises InvalidSettings: naming each bad variable, one line each, ``OUTPLAN_<NAME>: <rule>``;
        values are left out, since some hold secrets.
    """
    try:
        return cls()
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False, include_input=False):
            field = str(error["loc"][0]) if error["loc"] else "?"
            lines.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}")
        raise InvalidSettings(lines) from None
    except SettingsError as exc:  # a value the settings source could not even parse
        raise InvalidSettings([str(exc)]) from None
