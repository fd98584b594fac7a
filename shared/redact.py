"""What of a backend URL may be shown: no credentials, no query values.

Backend URLs can carry secrets in their userinfo (`user:pass@`), query (`?api_key=...`) or
fragment. Every place that shows a URL to a client, a log or an operator passes it through
`redact_url` first. Paths are shown as they are.
"""

from __future__ import annotations

__all__ = ["redact_url"]

_HIDDEN = "***"


def redact_url(url: str) -> str:
    """The URL without userinfo, with each query value and any fragment as ***; never raises.

    Parsed by hand rather than with urllib, which raises on some malformed URLs: a string that
    is not a URL at all loses at least everything that could be a credential.
    """
    head, hash_sign, fragment = url.partition("#")
    head, question_mark, query = head.partition("?")
    start = head.find("//")
    start = 0 if start < 0 else start + 2
    end = head.find("/", start)
    end = len(head) if end < 0 else end
    host = head[start:end].rpartition("@")[2]
    shown = head[:start] + host + head[end:] + question_mark + "&".join(_redact_param(p) for p in query.split("&"))
    if hash_sign:
        shown += "#" + (_HIDDEN if fragment else "")
    return shown


def _redact_param(param: str) -> str:
    name, equals, _ = param.partition("=")
    return f"{name}={_HIDDEN}" if equals else param
