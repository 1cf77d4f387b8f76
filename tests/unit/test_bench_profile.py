"""bench.profile's reading of py-spy's collapsed stacks."""

import pytest

from bench.profile import top

pytestmark = pytest.mark.unit

MAIN, RUN = "main (worker/entrypoints/cli.py:171)", "run (asyncio/runners.py:190)"
STACKS = "\n".join(
    [
        f"{MAIN};{RUN};_write (worker/batching.py:81);_do_execute (asyncpg/connection.py:2066) 6",
        f"{MAIN};{RUN};__writer (aiormq/connection.py:834);write (asyncio/streams.py:343) 3",
        f"{MAIN};{RUN} 1",
    ]
)


def test_self_shares_are_of_the_innermost_frame_and_totals_of_the_projects_frames() -> None:
    samples, by_self, by_total = top(STACKS)
    assert samples == 10
    assert by_self == [
        ("_do_execute (asyncpg/connection.py:2066)", 0.6),
        ("write (asyncio/streams.py:343)", 0.3),
        ("run (asyncio/runners.py:190)", 0.1),
    ]
    # Only the project's frames, each counted once per stack.
    assert by_total == [
        ("main (worker/entrypoints/cli.py:171)", 1.0),
        ("_write (worker/batching.py:81)", 0.6),
    ]


def test_nothing_sampled_is_no_share() -> None:
    assert top("") == (0, [], [])
