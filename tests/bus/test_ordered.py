"""bus.ordered against a real nats-server (here one without accounts, so that the test may
delete a replay's consumer behind its back as an operator would, or put a forged delivery
or heartbeat on its inbox)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from bus import server
from bus.ordered import OrderedReplay

STREAM = "ORDERED_TEST"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bare_url(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(server.find_binary()),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-sd",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.025)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def nc(bare_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(bare_url, allow_reconnect=False)
    await client.jetstream().add_stream(name=STREAM, subjects=["t.>"])
    yield client
    await client.close()


async def _publish(nc: Client, first: int, last: int) -> None:
    js = nc.jetstream()
    for n in range(first, last + 1):
        await js.publish(f"t.{n % 3}", str(n).encode())


class Seen:
    def __init__(self) -> None:
        self.values: list[int] = []
        self.changed = asyncio.Event()

    async def on(self, msg: Msg) -> None:
        self.values.append(int(msg.data))
        self.changed.set()

    async def until(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.values) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_a_replay_delivers_the_stream_in_order_then_what_is_new(nc: Client) -> None:
    await _publish(nc, 1, 50)
    seen = Seen()
    replay = await OrderedReplay(nc, nc.jetstream(), STREAM, "t.>", seen.on).start()
    await seen.until(50)
    await _publish(nc, 51, 60)
    await seen.until(60)
    await replay.unsubscribe()
    assert seen.values == list(range(1, 61))


async def test_the_filter_is_in_the_consumer_create_subject(nc: Client) -> None:
    asked: list[str] = []

    async def note(msg: Msg) -> None:
        asked.append(msg.subject)

    watcher = await nc.subscribe("$JS.API.CONSUMER.CREATE.>", cb=note)
    replay = await OrderedReplay(nc, nc.jetstream(), STREAM, "t.1", Seen().on).start()
    await replay.unsubscribe()
    await watcher.unsubscribe()
    assert len(asked) == 1
    prefix, _, rest = asked[0].partition(f"{STREAM}.")
    assert prefix == "$JS.API.CONSUMER.CREATE."
    name, _, filter_subject = rest.partition(".")
    assert name.startswith("replay-") and filter_subject == "t.1"


async def test_new_only_skips_what_was_there(nc: Client) -> None:
    await _publish(nc, 1, 5)
    seen = Seen()
    replay = await OrderedReplay(nc, nc.jetstream(), STREAM, "t.>", seen.on, True).start()
    await _publish(nc, 6, 8)
    await seen.until(3)
    await replay.unsubscribe()
    assert seen.values == [6, 7, 8]


async def test_a_lost_consumer_is_replaced_and_nothing_is_lost_or_repeated(nc: Client) -> None:
    await _publish(nc, 1, 20)
    seen = Seen()
    js = nc.jetstream()
    replay = await OrderedReplay(nc, js, STREAM, "t.>", seen.on, heartbeat_s=0.3).start()
    await seen.until(20)
    names = await js.consumers_info(STREAM)
    assert len(names) == 1
    await js.delete_consumer(STREAM, names[0].name)  # as if the server lost it
    await _publish(nc, 21, 30)  # published while nobody delivers them
    await seen.until(30)  # after two missed heartbeats a new consumer resumes at 21
    await replay.unsubscribe()
    assert seen.values == list(range(1, 31))


async def test_after_unsubscribe_nothing_more_arrives(nc: Client) -> None:
    seen = Seen()
    replay = await OrderedReplay(nc, nc.jetstream(), STREAM, "t.>", seen.on).start()
    await _publish(nc, 1, 3)
    await seen.until(3)
    await replay.unsubscribe()
    await _publish(nc, 4, 6)
    await asyncio.sleep(0.3)
    assert seen.values == [1, 2, 3]


async def test_a_gap_in_deliveries_replaces_the_consumer_without_loss_or_repeat(
    nc: Client,
) -> None:
    await _publish(nc, 1, 10)
    seen = Seen()
    js = nc.jetstream()
    replay = await OrderedReplay(nc, js, STREAM, "t.>", seen.on, heartbeat_s=5).start()
    await seen.until(10)
    first = replay.deliver_subject
    # a delivery that skips ahead, as after a message lost on the way
    await nc.publish(first, b"999", reply=f"$JS.ACK.{STREAM}.x.1.999.999.0.0")
    await _publish(nc, 11, 15)
    await seen.until(15, timeout=5)  # at once, not after the watchdog's 10 s
    await replay.unsubscribe()
    assert seen.values == list(range(1, 16))
    assert replay.deliver_subject == "" and first


async def test_a_heartbeat_that_disagrees_replaces_the_consumer(nc: Client) -> None:
    await _publish(nc, 1, 5)
    seen = Seen()
    replay = await OrderedReplay(nc, nc.jetstream(), STREAM, "t.>", seen.on).start()
    await seen.until(5)
    first = replay.deliver_subject
    await nc.publish(first, b"", headers={"Status": "100", "Nats-Last-Consumer": "7"})
    async with asyncio.timeout(5):
        while replay.deliver_subject in (first, ""):
            await asyncio.sleep(0.02)
    await _publish(nc, 6, 8)
    await seen.until(8)
    await replay.unsubscribe()
    assert seen.values == list(range(1, 9))


async def test_a_slow_handler_is_neither_cut_short_nor_taken_for_a_dead_consumer(
    nc: Client,
) -> None:
    await _publish(nc, 1, 6)
    finished: list[int] = []

    async def slow(msg: Msg) -> None:
        if int(msg.data) == 3:
            await asyncio.sleep(1.5)  # five heartbeat periods
        finished.append(int(msg.data))

    replay = await OrderedReplay(nc, nc.jetstream(), STREAM, "t.>", slow, heartbeat_s=0.3).start()
    async with asyncio.timeout(10):
        while len(finished) < 6:
            await asyncio.sleep(0.05)
    await replay.unsubscribe()
    assert finished == [1, 2, 3, 4, 5, 6]


async def test_new_only_resumes_after_what_was_there_when_replaced_early(nc: Client) -> None:
    await _publish(nc, 1, 5)
    seen = Seen()
    js = nc.jetstream()
    replay = await OrderedReplay(nc, js, STREAM, "t.>", seen.on, True, heartbeat_s=0.3).start()
    (info,) = await js.consumers_info(STREAM)
    await js.delete_consumer(STREAM, info.name)  # lost before it delivered anything
    await _publish(nc, 6, 7)
    await seen.until(2)
    await replay.unsubscribe()
    assert seen.values == [6, 7]
