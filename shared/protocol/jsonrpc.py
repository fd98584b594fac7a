"""JSON-RPC 2.0 envelopes, decoded once where bytes arrive.

Params are decoded one level deep into `dict[str, Raw]`: the gateway reads the few members it
routes on (`name`, `uri`, `_meta`) and re-emits every other member as the bytes it received,
so tool arguments and results are never re-validated on the way through.

What msgspec leaves unchecked in those bytes is checked here, once per body, so that a later
decode of a member cannot fail on them: the body must be UTF-8 (msgspec validates the strings it
decodes, not those it keeps as Raw) and nest at most `MAX_DEPTH` arrays and objects deep. A later
decode can still find a member of the wrong type, or a number beyond a float (`1e999` is JSON):
decode members typed (`param_str`, a `dict[str, Any]` decoder) and turn ValidationError into
InvalidParams.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, Raw, UnsetType

from shared.protocol.errors import GatewayError, InvalidParams, InvalidRequest, ParseError, error_body

__all__ = [
    "MAX_DEPTH",
    "ErrorResponse",
    "Message",
    "Notification",
    "Params",
    "Request",
    "RequestId",
    "ResultResponse",
    "decode_message",
    "decode_params",
    "encode",
    "error_response",
    "param_str",
    "raw",
]

RequestId = int | str
Params = dict[str, Raw]

MAX_DEPTH = 128
"""How deep arrays and objects may nest in a message. msgspec stops only at the interpreter's
recursion limit (~1000 levels, less the caller's stack, with a RecursionError), and the official
SDK's parser drops a message nested more than ~200 deep without an answer; 128 leaves room for
both and for any real message."""


class Message(msgspec.Struct, omit_defaults=True):
    """Any JSON-RPC message; `kind` says which."""

    jsonrpc: str | UnsetType = UNSET
    id: RequestId | UnsetType | None = UNSET
    method: str | UnsetType = UNSET
    params: Raw | UnsetType = UNSET
    result: Raw | UnsetType = UNSET
    error: Raw | UnsetType = UNSET

    @property
    def kind(self) -> str:
        """'request', 'notification' or 'response'."""
        if self.method is not UNSET:
            return "notification" if self.id is UNSET else "request"
        return "response"


class Request(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: RequestId
    method: str
    params: Raw | UnsetType = UNSET


class Notification(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    method: str
    params: Raw | UnsetType = UNSET


class ResultResponse(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: RequestId | None
    result: Raw


class ErrorResponse(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: RequestId | None
    error: Any


_message_decoder = msgspec.json.Decoder(Message)
_batch_decoder = msgspec.json.Decoder(list[Message])
_params_decoder = msgspec.json.Decoder(Params)
_items_decoder = msgspec.json.Decoder(list[Raw])
_string_decoder = msgspec.json.Decoder(str)
_syntax_decoder = msgspec.json.Decoder(float_hook=str)  # floats stay text: 1e999 is JSON, if not a float
encode = msgspec.json.Encoder().encode

_OBJECT, _ARRAY = ord("{"), ord("[")
_OPENERS = (_OBJECT, _ARRAY)
_ALL_BUT_OPENERS = bytes(byte for byte in range(256) if byte not in _OPENERS)  # translate() keeps only [ and {
_TOO_DEEP = f"Parse error: the JSON nests arrays and objects deeper than {MAX_DEPTH} levels; send flatter params"


def raw(value: Any) -> Raw:
    """Encode a Python value into a Raw JSON fragment."""
    return Raw(encode(value))


def decode_message(body: bytes, *, allow_batch: bool = False) -> Message | list[Message]:
    """Decode one JSON-RPC message (or a batch, where the protocol version allows it)."""
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError as exc:
            raise ParseError(f"Parse error: the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        decoded = _decode(body, allow_batch)
        if len(body.translate(None, _ALL_BUT_OPENERS)) > MAX_DEPTH:  # else it cannot nest deeper (most bodies)
            if isinstance(decoded, list):
                for message in decoded:
                    _check_depth(message, MAX_DEPTH - 2)  # the batch and the message are two levels
            else:
                _check_depth(decoded, MAX_DEPTH - 1)
    except RecursionError:
        raise ParseError(_TOO_DEEP) from None
    return decoded


def _decode(body: bytes, allow_batch: bool) -> Message | list[Message]:
    stripped = body.lstrip()
    if stripped[:1] == b"[":
        if not allow_batch:
            _check_json(body)
            raise InvalidRequest("JSON-RPC batches are not supported in this protocol version; send one message")
        try:
            batch = _batch_decoder.decode(body)
        except msgspec.ValidationError as exc:
            _check_json(body)
            raise InvalidRequest(f"Invalid JSON-RPC batch: {exc}") from None
        except msgspec.DecodeError:
            raise ParseError("Parse error: the body is not valid JSON") from None
        if not batch:
            raise InvalidRequest("Empty JSON-RPC batch")
        for message in batch:
            _validate(message)
        return batch
    try:
        message = _message_decoder.decode(body)
    except msgspec.ValidationError as exc:
        _check_json(body)
        raise InvalidRequest(f"Invalid JSON-RPC message: {exc}") from None
    except msgspec.DecodeError:
        raise ParseError("Parse error: the body is not valid JSON") from None
    _validate(message)
    return message


def _check_json(body: bytes) -> None:
    try:
        _syntax_decoder.decode(body)
    except msgspec.DecodeError:
        raise ParseError("Parse error: the body is not valid JSON") from None


def _check_depth(message: Message, levels: int) -> None:
    """ParseError when a member of `message` nests more than `levels` arrays and objects deep.

    Level by level: a value shorter than 2n bytes cannot nest n levels, so most values drop out on
    their length; each longer array or object is split one level (msgspec keeps its members Raw).
    """
    values = [member for member in (message.params, message.result, message.error) if member is not UNSET]
    while values:
        inner: list[Raw] = []
        for value in values:
            first = memoryview(value)[0]
            if first not in _OPENERS:
                continue
            if levels == 0:
                raise ParseError(_TOO_DEEP)
            inner.extend(_params_decoder.decode(value).values() if first == _OBJECT else _items_decoder.decode(value))
        levels -= 1
        values = [value for value in inner if len(value) > 2 * levels + 1]


def _validate(message: Message) -> None:
    if message.jsonrpc != "2.0":
        raise InvalidRequest('Invalid Request: "jsonrpc" must be "2.0"')
    if message.method is not UNSET:
        if message.id is None:
            raise InvalidRequest("Invalid Request: a request id must be a string or an integer, not null")
        if message.result is not UNSET or message.error is not UNSET:
            raise InvalidRequest("Invalid Request: a request cannot carry result or error")
    elif message.id is UNSET or (message.result is UNSET) == (message.error is UNSET):
        raise InvalidRequest('Invalid Request: expected "method", or a response with "id" and "result" or "error"')


def decode_params(params: Raw | UnsetType) -> Params:
    """The params object one level deep; absent params are an empty dict."""
    if params is UNSET:
        return {}
    try:
        return _params_decoder.decode(params)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise InvalidParams("Invalid params: expected a JSON object") from None


def param_str(params: Params, key: str, *, required: bool = True) -> str | None:
    """A string member of params, or InvalidParams naming it (optional ones may be absent or null)."""
    value = params.get(key)
    if value is None or (not required and bytes(value) == b"null"):
        if required:
            raise InvalidParams(f"Invalid params: missing required string {key!r}")
        return None
    try:
        return _string_decoder.decode(value)
    except msgspec.ValidationError:
        raise InvalidParams(f"Invalid params: {key!r} must be a string") from None


def error_response(request_id: RequestId | None, exc: GatewayError) -> bytes:
    """Encoded JSON-RPC error response for `exc`."""
    return encode(ErrorResponse(id=request_id, error=error_body(exc)))
