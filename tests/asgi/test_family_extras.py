"""The family's /events and /chat under the asgi era, beyond the bytes of the contract.

tests/test_family_contract.py holds every host to the bytes of both routes. Here, what
only the asgi era does with them, end to end and in process:

* /events read the way a browser's EventSource reads it: parsed into events (WHATWG HTML
  §9.2.6), each arriving on its own, ids in order;
* the chat room's rules over a real socket: everyone hears everything, a message too big
  is closed with 1009 and a binary one with 1003, a leaver is announced, and a member
  that does not read is dropped while the others go on talking;
* the same rules in process, where exact counts and the slow member's 1008 can be seen
  without a network in between.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from apps import asgi, chat, family
from servers.launch import ServerProcess, our_server_argv
from tests.conftest import ServerPool


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    pool = ServerPool()
    try:
        yield pool(our_server_argv("asgi"), name="asgi")
    finally:
        pool.stop_all()


@contextlib.contextmanager
def join(server: ServerProcess) -> Iterator[tuple[ClientConnection, int]]:
    """A new member of the server's room, and its number (from its own join event)."""
    with connect(f"ws://{server.host}:{server.port}/chat", proxy=None, open_timeout=10) as ws:
        event = json.loads(ws.recv(timeout=10))
        assert event["event"] == "join"
        yield ws, event["member"]


def next_event(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next event of this kind (joins and leaves of other tests' members may come first)."""
    while True:
        event: dict[str, Any] = json.loads(ws.recv(timeout=10))
        if event["event"] == kind:
            return event


# -- /events --------------------------------------------------------------------------------
def test_events_parse_as_server_sent_events_in_order(server: ServerProcess) -> None:
    """Read as an EventSource reads: lines, fields, a blank line dispatches the event."""
    events: list[tuple[str, str, float]] = []  # (id, data, when it arrived)
    fields: dict[str, str] = {}
    with (
        httpx.Client(timeout=30, trust_env=False) as client,
        client.stream("GET", server.url + "events?count=4&delay_ms=150") as reply,
    ):
        assert reply.headers["content-type"] == "text/event-stream"
        assert reply.headers["cache-control"] == "no-cache"
        for line in reply.iter_lines():
            if line == "":
                events.append((fields["id"], fields["data"], time.monotonic()))
                fields = {}
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")  # one leading space is dropped
    assert fields == {}  # the stream ended on an event's blank line
    assert [(id_, data) for id_, data, _ in events] == [
        (str(i), f"event {i} of 4") for i in (1, 2, 3, 4)
    ]
    # Each event was read as it was sent: 3 pauses of 150 ms lie between the first and last.
    assert events[-1][2] - events[0][2] >= 0.3


# -- /chat over the network -----------------------------------------------------------------
def test_everyone_hears_every_message_the_sender_too(server: ServerProcess) -> None:
    with join(server) as (a, number_a), join(server) as (b, number_b), join(server) as (c, _):
        a.send("from a")
        b.send("from b")
        for ws in (a, b, c):
            heard = [next_event(ws, "say") for _ in range(2)]
            assert heard == [
                {"event": "say", "member": number_a, "text": "from a"},
                {"event": "say", "member": number_b, "text": "from b"},
            ]


def test_a_message_over_the_limit_is_closed_with_1009(server: ServerProcess) -> None:
    with join(server) as (talker, number), join(server) as (listener, _):
        at_limit = "\u00e9" * (family.CHAT_MESSAGE_BYTES // 2)  # 2 bytes each in UTF-8
        talker.send(at_limit)
        assert next_event(listener, "say")["text"] == at_limit
        talker.send(at_limit + "x")  # one byte more
        with pytest.raises(ConnectionClosed) as closed:
            next_event(talker, "never")
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        assert closed.value.rcvd.reason == "a message holds at most 1024 bytes of UTF-8"
        # The others never heard the oversized message; they heard the talker leave.
        assert next_event(listener, "leave")["member"] == number
        listener.send("still here")
        assert next_event(listener, "say")["text"] == "still here"


def test_a_binary_message_is_closed_with_1003(server: ServerProcess) -> None:
    with join(server) as (ws, _):
        ws.send(b"\x00\x01")
        with pytest.raises(ConnectionClosed) as closed:
            next_event(ws, "never")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_a_member_who_leaves_is_announced(server: ServerProcess) -> None:
    with join(server) as (stays, _):
        with join(server) as (_goes, number):
            assert next_event(stays, "join")["member"] == number
        left = next_event(stays, "leave")
        assert left["member"] == number
        stays.send("alone?")
        assert next_event(stays, "say")["text"] == "alone?"


def test_a_member_who_does_not_read_is_dropped_not_waited_for(server: ServerProcess) -> None:
    # A client that reads nothing after its handshake, with a small receive buffer: soon
    # the server cannot send to it, its outbox fills, and the room drops it.
    idle = socket.socket()
    idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    idle.settimeout(10)
    idle.connect(server.address)
    key = base64.b64encode(os.urandom(16)).decode()
    idle.sendall(
        f"GET /chat HTTP/1.1\r\nHost: {server.host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .encode()
    )  # fmt: skip
    assert idle.recv(12) == b"HTTP/1.1 101"
    with idle, join(server) as (talker, _):
        # The talker sends in batches (fewer than CHAT_BACKLOG, so that it never falls
        # behind itself) and hears each batch back before the next: the room keeps serving
        # it however far behind the idle member is. A few MB of kernel buffers fill first
        # (about 3000 messages of 1000 bytes here), then the idle member is dropped.
        batch = family.CHAT_BACKLOG // 2
        for _ in range(20_000 // batch):
            for _ in range(batch):
                talker.send("x" * 1000)
            said = 0
            while said < batch:
                event = json.loads(talker.recv(timeout=10))
                if event["event"] == "leave":
                    return  # dropped, and the talker still talking: what we wanted
                said += event["event"] == "say"
        pytest.fail("the idle member was never dropped, after 20000 messages")


# -- /chat in process -----------------------------------------------------------------------
class FakeMember:
    """One WebSocket as the app sees it: an inbox we fill, and what the app sent. A member
    with ``stuck`` set never finishes a websocket.send (a client that stopped reading)."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.sent: list[dict[str, Any]] = []
        self.stuck = stuck
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: Any) -> None:
        self.sent.append(dict(message))
        if self.stuck and message["type"] == "websocket.send":
            await asyncio.Event().wait()  # forever, until cancelled

    def start(self) -> None:
        scope = {"type": "websocket", "path": "/chat", "headers": [], "subprotocols": []}
        self.task = asyncio.ensure_future(asgi.app(scope, self.receive, self.send))

    def say(self, text: str) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})

    def leave(self) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]

    def closes(self) -> list[tuple[int, str]]:
        return [(m["code"], m["reason"]) for m in self.sent if m["type"] == "websocket.close"]


async def settle() -> None:
    """Let every ready task run until nothing is left to do."""
    for _ in range(50):
        await asyncio.sleep(0)


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch) -> chat.Room:
    """A fresh room for the in-process app, so that member numbers start from 1."""
    fresh = chat.Room()
    monkeypatch.setattr(asgi, "ROOM", fresh)
    return fresh


def test_in_process_events_and_counts(room: chat.Room) -> None:
    async def run() -> tuple[FakeMember, FakeMember]:
        a, b = FakeMember(), FakeMember()
        a.start()
        await settle()
        b.start()
        await settle()
        a.say("hi")
        await settle()
        b.leave()
        await settle()
        a.leave()
        await settle()
        assert a.task is not None and b.task is not None
        await asyncio.wait_for(asyncio.gather(a.task, b.task), 10)
        return a, b

    a, b = asyncio.run(run())
    assert a.events() == [
        {"event": "join", "member": 1, "members": 1},
        {"event": "join", "member": 2, "members": 2},
        {"event": "say", "member": 1, "text": "hi"},
        {"event": "leave", "member": 2, "members": 1},
    ]
    assert b.events() == [
        {"event": "join", "member": 2, "members": 2},
        {"event": "say", "member": 1, "text": "hi"},
    ]
    assert a.closes() == b.closes() == []  # they left: nobody to close
    assert room.members == {}
    # Events are JSON with sorted keys and no spaces (the family's rule 7, no newline).
    assert a.sent[1]["text"] == '{"event":"join","member":1,"members":1}'


def test_in_process_a_stuck_member_is_dropped_with_1008(room: chat.Room) -> None:
    async def run() -> tuple[FakeMember, FakeMember]:
        talker, stuck = FakeMember(), FakeMember(stuck=True)
        talker.start()
        stuck.start()
        await settle()
        # The stuck member's first send never returns; its outbox then takes
        # CHAT_BACKLOG more events, and the next one drops it.
        for i in range(family.CHAT_BACKLOG + 5):
            talker.say(f"line {i}")
            await settle()
        assert stuck.task is not None
        await asyncio.wait_for(stuck.task, 10)  # it ended on its own
        talker.leave()
        await settle()
        return talker, stuck

    talker, stuck = asyncio.run(run())
    assert stuck.closes() == [(1008, "too slow: 32 messages were waiting for you")]
    said = [e["text"] for e in talker.events() if e["event"] == "say"]
    assert said == [f"line {i}" for i in range(family.CHAT_BACKLOG + 5)]  # nothing held up
    assert {"event": "leave", "member": 2, "members": 1} in talker.events()
    assert room.members == {}


def test_in_process_a_full_room_closes_the_newcomer_with_1013(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(asgi, "ROOM", chat.Room(capacity=1))

    async def run() -> tuple[FakeMember, FakeMember]:
        first, second = FakeMember(), FakeMember()
        first.start()
        second.start()
        await settle()
        assert second.task is not None and second.task.done()
        first.leave()
        await settle()
        return first, second

    first, second = asyncio.run(run())
    assert second.sent[0] == {"type": "websocket.accept"}  # accepted, so the reason is seen
    assert second.closes() == [(1013, "the room is full (100 members); try again later")]
    assert [e["event"] for e in first.events()] == ["join"]  # nobody else ever joined


def test_room_without_asgi() -> None:
    async def run() -> None:
        room = chat.Room(capacity=2, backlog=2)
        one = room.join()
        two = room.join()
        assert one is not None and two is not None
        assert room.join() is None  # full
        room.say(one, "a")  # one's outbox: join 1, join 2, and now full
        assert one.dropped.is_set() and not two.dropped.is_set()
        assert two.outbox.full() and not two.dropped.is_set()
        room.leave(one)  # announced to two, whose outbox is full: two is dropped in turn
        assert two.dropped.is_set()
        room.leave(one)  # a second leave is nothing
        assert list(room.members) == [two.number]
        assert [json.loads(two.outbox.get_nowait()) for _ in range(2)] == [
            {"event": "join", "member": 2, "members": 2},
            {"event": "say", "member": 1, "text": "a"},
        ]

    asyncio.run(run())
