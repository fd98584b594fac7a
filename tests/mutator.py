"""Seeded damage to valid MCP messages and HTTP headers, for `tests/test_fuzz.py`.

`Mutator(seed)` takes real messages of both protocol eras and breaks them the ways a faulty or
hostile client would: truncation, byte flips, invalid UTF-8 inside strings, deep nesting, huge
numbers, a wrong type for any member, duplicated keys, batches; headers missing, duplicated,
mismatching or invalid. The same seed gives the same sequence, so a failure reproduces.
"""

from __future__ import annotations

import base64
import copy
import json
import random
from dataclasses import dataclass
from typing import Any

__all__ = ["Headers", "Mutator", "Verbatim", "to_json"]

Headers = list[tuple[str, str | bytes]]


@dataclass(frozen=True)
class Verbatim:
    """Bytes written into the JSON text as they are (invalid UTF-8, huge numbers, deep nesting).

    As a dict key it repeats a key the dict already has, or spells one that is not valid UTF-8.
    """

    data: bytes


def to_json(value: Any) -> bytes:
    if isinstance(value, Verbatim):
        return value.data
    if isinstance(value, dict):
        return b"{" + b",".join(to_json(key) + b":" + to_json(item) for key, item in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(to_json(item) for item in value) + b"]"
    return json.dumps(value).encode()


_BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80", b"\xc3"]
_BAD_ESCAPES = [b"\\ud800", b"\\udc00x", b"\\x41", b"\\u12", b"\\", b"\\q"]
_HUGE_NUMBERS = [b"1e999999", b"-1e400", b"123456789012345678901234567890", b"1" + b"0" * 400, b"1.5e-99999", b"-0"]
_DEPTHS = [64, 127, 128, 129, 130, 200, 500, 990, 1000, 5000, 100_000]
_WRONG_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**70,
    1.5,
    "",
    "x",
    [],
    {},
    [1, {"a": []}],
    {"a": 1},
    {"requestId": 1},
    "2.0",
    "tools/call",
    "2026-07-28",
]
_RANDOM_BODIES = [b"", b" ", b"null", b"[]", b"{}", b'"tools/list"', b"1", b"[1,2]", b"[[]]", b"\xef\xbb\xbf{}", b"{]"]


def _deep(depth: int, rng: random.Random) -> Verbatim:
    if rng.random() < 0.5:
        return Verbatim(b"[" * depth + b"]" * depth)
    return Verbatim(b'{"a":' * depth + b"1" + b"}" * depth)


class Mutator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    # -- values ---------------------------------------------------------------------------------

    def _bad_string(self, original: Any) -> Verbatim:
        text = json.dumps(original if isinstance(original, str) else "x")[1:-1].encode()
        cut = self.rng.randint(0, len(text))
        bad = self.rng.choice(_BAD_UTF8 if self.rng.random() < 0.75 else _BAD_ESCAPES)
        return Verbatim(b'"' + text[:cut] + bad + text[cut:] + b'"')

    def _replacement(self, original: Any) -> Any:
        roll = self.rng.random()
        if roll < 0.35:
            return copy.deepcopy(self.rng.choice(_WRONG_VALUES))
        if roll < 0.6:
            return self._bad_string(original)
        if roll < 0.8:
            return _deep(self.rng.choice(_DEPTHS), self.rng)
        return Verbatim(self.rng.choice(_HUGE_NUMBERS))

    def _slots(self, value: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        """Every (container, key) in `value`, depth first."""
        if isinstance(value, dict):
            for key, item in value.items():
                found.append((value, key))
                self._slots(item, found)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                found.append((value, index))
                self._slots(item, found)
        return found

    def _mutate_tree(self, message: Any) -> Any:
        """One structural change somewhere in `message` (a deep copy of a seed)."""
        slots = self._slots(message, [])
        if not slots:
            return _deep(self.rng.choice(_DEPTHS), self.rng)
        container, key = self.rng.choice(slots)
        roll = self.rng.random()
        if isinstance(container, dict) and roll < 0.12:
            del container[key]
        elif isinstance(container, dict) and roll < 0.24:
            container[Verbatim(to_json(key))] = self._replacement(container[key])  # the key again, last
        elif isinstance(container, dict) and roll < 0.32:
            container[self.rng.choice(["zz", "_meta", "id", "params", "\u00e9"])] = self._replacement(None)
        elif isinstance(container, dict) and roll < 0.4:
            value = container.pop(key)
            container[self._bad_string(key)] = value
        else:
            container[key] = self._replacement(container[key])
        return message

    # -- bytes ----------------------------------------------------------------------------------

    def _mutate_bytes(self, body: bytes) -> bytes:
        roll = self.rng.random()
        if roll < 0.3 and body:
            return body[: self.rng.randrange(len(body))]
        if roll < 0.6 and body:
            data = bytearray(body)
            for _ in range(self.rng.randint(1, 4)):
                data[self.rng.randrange(len(data))] = self.rng.randrange(256)
            return bytes(data)
        if roll < 0.75:
            at = self.rng.randint(0, len(body))
            return body[:at] + self.rng.choice(_BAD_UTF8) + body[at:]
        if roll < 0.85:
            return self.rng.choice([b"\xef\xbb\xbf", b"  \n", b"\x00"]) + body
        if roll < 0.93:
            return body + self.rng.choice([b"x", b"}", b"]", b" {}", b"\n{}", b"\xff"])
        return self.rng.choice(_RANDOM_BODIES)

    def body(self, seed_message: Any, *, batch_with: list[Any] | None = None) -> bytes:
        """A damaged copy of `seed_message`: structural and/or byte-level; sometimes intact."""
        message = copy.deepcopy(seed_message)
        roll = self.rng.random()
        if roll < 0.08:
            return to_json(message)
        if batch_with is not None and roll < 0.2:
            extra = [copy.deepcopy(self.rng.choice(batch_with)) for _ in range(self.rng.randint(0, 3))]
            items = [message, *extra]
            if self.rng.random() < 0.6:
                index = self.rng.randrange(len(items))
                items[index] = self._mutate_tree(items[index])
            return to_json(items)
        for _ in range(self.rng.randint(1, 2)):
            message = self._mutate_tree(message) if not isinstance(message, Verbatim) else message
        body = to_json(message)
        if self.rng.random() < 0.3:
            body = self._mutate_bytes(body)
        return body

    # -- headers --------------------------------------------------------------------------------

    def headers(self, base: Headers, alternatives: dict[str, list[str]]) -> Headers:
        """`base` with up to two headers dropped, duplicated, swapped for another value or made invalid."""
        headers = list(base)
        for _ in range(self.rng.choice([0, 0, 1, 1, 2])):
            if not headers:
                break
            index = self.rng.randrange(len(headers))
            name, value = headers[index]
            roll = self.rng.random()
            if roll < 0.2:
                del headers[index]
            elif roll < 0.4:
                headers.append((name, self.rng.choice([value, *alternatives.get(name, ["x"])])))
            elif roll < 0.7:
                headers[index] = (name, self.rng.choice(alternatives.get(name, ["x"])))
            else:
                headers[index] = (name, self._bad_header_value())
        return headers

    def _bad_header_value(self) -> str | bytes:
        invalid_utf8 = base64.b64encode(b"\xff\xfe").decode()
        return self.rng.choice(
            [
                b"\xff\xfe",
                b"caf\xc3\xa9",
                "",
                "a" * 8000,
                "=?base64?!!!?=",
                f"=?base64?{invalid_utf8}?=",
                "=?base64??=",
                "=?base64?",
                "2026-07-28, 2025-11-25",
                "tools/call\ttools/list",
            ]
        )

    def choice(self, options: list[Any]) -> Any:
        return self.rng.choice(options)

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability
