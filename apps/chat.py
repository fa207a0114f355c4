"""The chat room behind ``/chat``: who is in it, and how one message reaches everyone.

Theory of operation
-------------------
A chat room is the smallest program that needs what only ASGI can give an application: a
connection that stays open both ways, so that the server can speak without being asked.
``apps/asgi.py`` holds the ASGI side (accept, receive, send, close); this module holds the
room, which knows nothing of ASGI: plain asyncio values, so that it reads, and tests, alone.

* **One room per process.** Members are numbered from 1 in the order they join. Every
  event is sent to every member, the one who caused it included, as one JSON text message
  (``json.dumps`` with sorted keys and no spaces, as the family writes JSON)::

      {"event":"join","member":3,"members":2}      member 3 came in; 2 are here now
      {"event":"say","member":3,"text":"hi"}        member 3 said "hi"
      {"event":"leave","member":3,"members":1}     member 3 went; 1 is left

  The first event a member hears is its own ``join``: that is how a page learns its number.
* **A broadcast never waits.** Sending to a member awaits that member's socket, and a member
  whose client reads slowly (or not at all) would make every speaker wait for it. So each
  member has an *outbox*, a queue that its own task empties into its socket, and a
  broadcast only drops the event into every outbox (``put_nowait``) and returns.
* **Everything is bounded.** An outbox holds ``family.CHAT_BACKLOG`` events; a member whose
  outbox is full when an event arrives has fallen that far behind, and is *dropped*
  (its task closes its socket with 1008) rather than given an ever longer queue. The room
  holds ``family.CHAT_MEMBERS`` members, and a message at most
  ``family.CHAT_MESSAGE_BYTES`` bytes (both checked in ``apps/asgi.py``, where messages
  arrive). So the memory a room can take has a ceiling, whatever its members do.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field

from apps import family

__all__ = ["Member", "Room"]


@dataclass(eq=False)
class Member:
    """One connection in the room: its number, its outbox, and whether it was dropped."""

    number: int
    outbox: asyncio.Queue[str]
    dropped: asyncio.Event = field(default_factory=asyncio.Event)


class Room:
    """The members of one chat room, and the broadcast that reaches them all."""

    def __init__(
        self, capacity: int = family.CHAT_MEMBERS, backlog: int = family.CHAT_BACKLOG
    ) -> None:
        self.capacity = capacity
        self.backlog = backlog
        self.members: dict[int, Member] = {}
        self._numbers = itertools.count(1)

    def join(self) -> Member | None:
        """A new member, already told of its own arrival; None if the room is full."""
        if len(self.members) >= self.capacity:
            return None
        member = Member(next(self._numbers), asyncio.Queue(self.backlog))
        self.members[member.number] = member
        self._broadcast({"event": "join", "member": member.number, "members": len(self.members)})
        return member

    def leave(self, member: Member) -> None:
        """Take ``member`` out (once: a second call does nothing) and tell the others."""
        if self.members.pop(member.number, None) is not None:
            self._broadcast(
                {"event": "leave", "member": member.number, "members": len(self.members)}
            )

    def say(self, member: Member, text: str) -> None:
        self._broadcast({"event": "say", "member": member.number, "text": text})

    def _broadcast(self, event: dict[str, str | int]) -> None:
        message = json.dumps(event, sort_keys=True, separators=(",", ":"))
        for member in self.members.values():
            try:
                member.outbox.put_nowait(message)
            except asyncio.QueueFull:
                # Too far behind to catch up. Its own task notices, closes its socket and
                # calls leave(); until then it simply misses what it could not hold.
                member.dropped.set()
