"""The connection type the repositories take."""

from typing import TypeAlias

import asyncpg
import asyncpg.pool

# A connection opened on its own, or one lent by a pool (a proxy that forwards to a connection:
# asyncpg's types do not make it a subclass of Connection, though it answers the same methods).
Connection: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
