"""Unmasking a client's WebSocket payload in one C-level XOR (both servers loop per byte)."""

from __future__ import annotations

from collections.abc import Sequence


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, in C (gevent-websocket loops over each byte in Python)."""
    n = len(payload)
    key = (bytes(mask) * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def unmask_from(
    data: bytes | bytearray, mask: Sequence[int] | bytes, length: int | None = None, offset: int = 0
) -> bytes:
    """eventlet's `_apply_mask`: XOR `length` bytes of `data` with the 4-byte mask, whose
    position `offset` (a partial read's start within the payload) lines up with data[0]."""
    n = len(data) if length is None else length
    key = bytes(mask)
    turn = offset % 4
    return unmask(bytes(data[:n]), key[turn:] + key[:turn])
