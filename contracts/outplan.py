"""The outplan as replies and events carry it (the tutorial's JSON plus ``customer_id``)."""

from uuid import UUID

from pydantic import BaseModel, ConfigDict

from .fields import StoredSource


class Outplan(BaseModel):
    """One outplan as stored; times are UTC ``YYYY-MM-DD HH:MM:SS.ffffff``.

    A read model: values are taken as stored, so that outplans written under earlier input rules
    still parse. Commands are where the rules are enforced."""

    # Readers ignore fields added by later versions of the contract.
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: UUID
    customer_id: UUID
    name: str
    detail: str
    source: StoredSource
    dial_timeout: int
    try_interval: int
    max_try_count_0: int
    max_try_count_1: int
    max_try_count_2: int
    max_try_count_3: int
    max_try_count_4: int
    tm_create: str
    tm_update: str
    tm_delete: str


class OutplanPage(BaseModel):
    """One page of a list: ``next_page_token`` is ``""`` on the last page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    result: list[Outplan]
    next_page_token: str
