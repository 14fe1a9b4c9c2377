"""Concurrent calls of one script share a round trip, and stay independent calls."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from simulator.local_s3 import free_port
from worker.ledger.batching import MOST, BatchedScript

# Answers its argument, and refuses 'bad' as a script error would.
ECHO = """
if ARGV[1] == 'bad' then return redis.error_reply('refused ' .. ARGV[1]) end
return 'seen ' .. ARGV[1]
"""


@pytest.fixture
async def named(redis_url: str) -> AsyncIterator[Redis]:
    """A client whose connections carry a name of their own, so Redis can count them."""
    client = Redis.from_url(redis_url, client_name=f"batching-{uuid.uuid4().hex[:8]}")
    yield client
    await client.aclose()


async def connections(client: Redis) -> int:
    name = client.connection_pool.connection_kwargs["client_name"]
    return sum(1 for entry in await client.client_list() if entry["name"] == name)


async def test_concurrent_calls_share_one_connection_and_get_their_own_answers(
    named: Redis,
) -> None:
    batched = BatchedScript(named, ECHO)
    answers = await asyncio.gather(*(batched([str(n)]) for n in range(200)))
    assert answers == [f"seen {n}".encode() for n in range(200)]
    assert await connections(named) == 1


async def test_a_flood_is_sent_as_several_batches(named: Redis) -> None:
    batched = BatchedScript(named, ECHO)
    calls = 600
    assert calls > MOST
    answers = await asyncio.gather(*(batched([str(n)]) for n in range(calls)))
    assert answers == [f"seen {n}".encode() for n in range(calls)]
    assert await connections(named) > 1  # the batches went side by side


async def test_one_at_a_time_per_call_is_what_batching_spares(named: Redis) -> None:
    """The same concurrency through redis-py's own script call takes a connection a call."""
    direct = named.register_script(ECHO)
    await asyncio.gather(*(direct(args=[str(n)]) for n in range(50)))
    assert await connections(named) > 1


async def test_a_call_refused_by_the_script_fails_alone(named: Redis) -> None:
    batched = BatchedScript(named, ECHO)
    answers = await asyncio.gather(
        batched(["a"]), batched(["bad"]), batched(["b"]), return_exceptions=True
    )
    assert answers[0] == b"seen a"
    assert answers[2] == b"seen b"
    assert isinstance(answers[1], ResponseError)
    assert "refused bad" in str(answers[1])


async def test_a_script_redis_forgot_is_loaded_again(named: Redis) -> None:
    batched = BatchedScript(named, ECHO)
    assert await batched(["first"]) == b"seen first"
    await named.script_flush()  # as a restart or a failover leaves it
    answers = await asyncio.gather(*(batched([str(n)]) for n in range(10)))
    assert answers == [f"seen {n}".encode() for n in range(10)]


async def test_a_lost_connection_fails_every_call_of_the_batch() -> None:
    nobody = Redis(port=free_port(), socket_connect_timeout=1)
    batched = BatchedScript(nobody, ECHO)
    answers = await asyncio.gather(*(batched([str(n)]) for n in range(5)), return_exceptions=True)
    assert all(isinstance(answer, ConnectionError) for answer in answers), answers
    await nobody.aclose()


async def test_a_cancelled_caller_leaves_the_others_answered(named: Redis) -> None:
    batched = BatchedScript(named, ECHO)
    leaving = asyncio.create_task(batched(["leaving"]))
    staying = asyncio.create_task(batched(["staying"]))
    await asyncio.sleep(0)  # both are waiting for the batch
    leaving.cancel()
    assert await staying == b"seen staying"
    assert leaving.cancelled()
