"""A connection pool on the session's database."""

from collections.abc import AsyncIterator

import asyncpg
import pytest


@pytest.fixture
async def pool(session_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(session_database, min_size=1, max_size=4)
    yield pool
    await pool.close()
