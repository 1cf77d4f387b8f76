"""One typed settings object, read from ``OUTPLAN_*`` environment variables."""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts import names


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTPLAN_", frozen=True)

    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/outplans")

    command_exchange: str = names.COMMAND_EXCHANGE
    command_queue: str = names.COMMAND_QUEUE
    dead_letter_exchange: str = names.DEAD_LETTER_EXCHANGE
    dead_letter_queue: str = names.DEAD_LETTER_QUEUE
    event_exchange: str = names.EVENT_EXCHANGE
    event_source: str = names.EVENT_SOURCE

    prefetch: int = Field(300, ge=1, le=65535)
    batch_size: int = Field(100, ge=1, description="changes applied together in one transaction, at most")
    batch_writers: int = Field(1, ge=1, description="lanes: batches written side by side")
    retry_limit: int = Field(5, ge=1, description="deliveries of a failing command before it is dead-lettered")
    queue_delivery_limit: int = Field(20, ge=1, description="the command queue's x-delivery-limit backstop")
    db_pool_size: int = Field(10, ge=1)
    relay_batch_size: int = Field(200, ge=1)
    relay_poll_seconds: float = Field(1.0, gt=0)
    idempotency_retention_hours: float = Field(72.0, ge=24.0)
    drain_seconds: float = Field(10.0, ge=0)
    log_level: str = "INFO"
    uvloop: bool = Field(True, description="run the worker on uvloop")
    metrics_port: int = Field(9464, ge=0, le=65535, description="HTTP port for /metrics, /livez, /readyz; 0: off")
    metrics_host: str = "0.0.0.0"
    ready_max_outbox_age_seconds: float = Field(30.0, gt=0, description="/readyz fails past this outbox age")
    fault_hook: bool = Field(False, description="test-only: a body with name '__raise__' makes the handler raise")
