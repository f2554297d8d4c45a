"""What the web chat page shows: recent messages per chat, in bounded memory.

The page reads its conversation from here (the model's history lives in the memory
store). Everything is capped, because anyone can open a chat: the number of chats,
the chats per client address, the messages per chat and the characters in all. The
least recently active chat is forgotten first; a page whose chat was forgotten keeps
what it shows and goes on receiving new replies.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from typing import Any

import attrs


@attrs.frozen
class OutboxLimits:
    max_chats: int = 1000
    max_chats_per_client: int = 10
    messages_per_chat: int = 100
    max_chars: int = 2_000_000


@attrs.define
class _Chat:
    client: str
    messages: collections.deque[dict[str, Any]] = attrs.field(factory=collections.deque)
    ids: dict[str, int] = attrs.field(factory=dict)
    chars: int = 0


class Outbox:
    """Messages per chat id, with long-poll reads."""

    def __init__(self, limits: OutboxLimits) -> None:
        self.limits = limits
        self._chats: collections.OrderedDict[str, _Chat] = collections.OrderedDict()
        self._by_client: dict[str, collections.OrderedDict[str, None]] = {}
        self._chars = 0
        self._seq = 0
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._closing = False

    def __len__(self) -> int:
        return len(self._chats)

    @property
    def chars(self) -> int:
        return self._chars

    def clients(self) -> int:
        return len(self._by_client)

    def push(self, chat_id: str, client: str | None, sender: str, text: str,
             message_id: str | None) -> int:
        """Append a message (once per ``message_id``) and return its sequence number.

        ``client`` (who opened the chat) counts the chat against that client's quota;
        None for a reply, which joins its chat (or opens one of its own if forgotten).
        """
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._open(chat_id, client or chat_id)
        else:
            self._chats.move_to_end(chat_id)
            self._by_client[chat.client].move_to_end(chat_id)
        if message_id is not None and message_id in chat.ids:
            # A resent message (same id) is shown once, as the inbox processes it once.
            return chat.ids[message_id]
        self._seq += 1
        chat.messages.append({"seq": self._seq, "from": sender, "text": text, "id": message_id,
                              "at": time.time()})
        chat.chars += len(text)
        self._chars += len(text)
        if message_id is not None:
            chat.ids[message_id] = self._seq
        while len(chat.messages) > self.limits.messages_per_chat:
            self._drop_oldest_message(chat)
        while self._chars > self.limits.max_chars:
            oldest = next(iter(self._chats))
            if oldest != chat_id:
                self._forget(oldest)
            elif len(chat.messages) > 1:
                self._drop_oldest_message(chat)
            else:
                break
        self._wake(chat_id)
        return self._seq

    def after(self, chat_id: str, seq: int) -> list[dict[str, Any]]:
        chat = self._chats.get(chat_id)
        return [m for m in chat.messages if m["seq"] > seq] if chat else []

    async def messages(self, chat_id: str, after: int, wait: float) -> list[dict[str, Any]]:
        """Messages of ``chat_id`` newer than ``after``, waiting up to ``wait`` seconds."""
        if not (math.isfinite(wait) and wait >= 0):
            # A NaN deadline never passes and slows every timer of the event loop.
            raise ValueError(f"wait must be a finite number of seconds >= 0, got {wait!r}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            found = self.after(chat_id, after)
            remaining = deadline - loop.time()
            if found or remaining <= 0 or self._closing:
                return found
            waiter: asyncio.Future[None] = loop.create_future()
            waiters = self._waiters.setdefault(chat_id, set())
            waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                waiters.discard(waiter)
                if not waiters and self._waiters.get(chat_id) is waiters:
                    del self._waiters[chat_id]

    def close(self) -> None:
        # Release the long polls so a shutdown does not wait for them to time out.
        self._closing = True
        for chat_id in list(self._waiters):
            self._wake(chat_id)

    # -- bookkeeping -------------------------------------------------------------
    def _open(self, chat_id: str, client: str) -> _Chat:
        mine = self._by_client.setdefault(client, collections.OrderedDict())
        while len(mine) >= self.limits.max_chats_per_client:
            # One client's new chats push out its own old ones, never other people's.
            self._forget(next(iter(mine)))
        while len(self._chats) >= self.limits.max_chats:
            self._forget(next(iter(self._chats)))
        chat = self._chats[chat_id] = _Chat(client=client)
        self._by_client.setdefault(client, collections.OrderedDict())[chat_id] = None
        return chat

    def _forget(self, chat_id: str) -> None:
        chat = self._chats.pop(chat_id)
        self._chars -= chat.chars
        mine = self._by_client[chat.client]
        del mine[chat_id]
        if not mine:
            del self._by_client[chat.client]

    def _drop_oldest_message(self, chat: _Chat) -> None:
        dropped = chat.messages.popleft()
        chat.chars -= len(dropped["text"])
        self._chars -= len(dropped["text"])
        if dropped["id"] is not None:
            chat.ids.pop(dropped["id"], None)

    def _wake(self, chat_id: str) -> None:
        for waiter in self._waiters.get(chat_id, ()):
            if not waiter.done():
                waiter.set_result(None)
