# ruff: noqa: RUF001  (the look-alike table is made of ambiguous characters on purpose)
"""Tool names as the denylist compares them, and names too deceptive to expose at all.

A backend chooses its tool names, so `kubectl_delete` spelled with a Cyrillic e (U+0435),
`kubectl-delete` or `kubectl_delete` plus a zero-width space must not slip past a list of plain
ASCII names. `normalize_tool_name` folds such variants into one comparison key, not a display
name. Its look-alike table maps letters of other scripts, and dashes, dots and slashes, that pass
for ASCII in a tool name to their ASCII form (a subset of Unicode TR39 confusables). Look-alikes
within ASCII (`I` for `l`) are left to the denylist: case folding already merges `I` with `i`, and
folding digits would change what a glob's `[0-9]` matches.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["has_hidden_characters", "name_forms", "normalize_glob", "normalize_tool_name"]

# Latin letter, digit or separator -> characters of other scripts drawn like it.
_LOOKALIKES = {
    "a": "ɑαаΑАᎪ",
    "b": "ƄЬᏏΒВᏴꞴ",
    "c": "ᴄϲςⲥсꮯϹⲤСᏟ",
    "d": "ԁᏧᎠ",
    "e": "℮ꬲеҽΕЕᎬ",
    "f": "ꬵꞙẝքϜꞘ",
    "g": "ɡᶃƍցԌᏀᏳ",
    "h": "һհᏂΗⲎНᎻ",
    "i": "ıɪɩιіꙇꭵᎥ",
    "j": "ϳјꞲͿЈᎫ",
    "k": "κкΚⲔКᏦ",
    "l": "∣ǀƖӏΙⲒІӀⳐᏞ",
    "m": "мΜϺⲘМᎷ",
    "n": "ηոռΝⲚ",
    "o": "ᴏᴑꬽοσⲟоօΟⲞОՕ〇",
    "p": "ρϱⲣрΡⲢРᏢ",
    "q": "ԛգզ",
    "r": "ꭇꭈᴦⲅгꮁƦᎡᏒ",
    "s": "ꜱƽѕꮪЅՏᏕᏚ",
    "t": "τтΤⲦТᎢ",
    "u": "ꞟᴜꭎꭒʋυսՍ",
    "v": "∨⋁ᴠνѵꮩѴᏙ",
    "w": "ɯᴡѡԝաꮃԜᎳᏔ",
    "x": "×хχΧⲬХᎲ",
    "y": "ɣᶌʏỿꭚγℽуүΥϒⲨУҮᎩᎽ",
    "z": "ᴢꮓΖᏃ",
    "2": "ƧϨꙄ",
    "3": "ƷȜЗӠƐ",
    "5": "Ƽ",
    "6": "бᏮ",
    "8": "ȣȢ",
    "-": "‐‑‒–—﹘⁃˗−",
    ".": "·‧∙・",
    "/": "∕⁄╱⧸",
    "_": "ˍ",
}
_FOLD = str.maketrans({char: latin for latin, chars in _LOOKALIKES.items() for char in chars})

# Invisible code points outside the Cc/Cf/Cn categories (Unicode default-ignorables and blanks).
_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn"})
_SEPARATORS = re.compile(r"[\s\-./_]+")
_GLOB_CLASS = re.compile(r"(\[!?\]?[^\]]*\])")


def _hidden(char: str) -> bool:
    return char in _INVISIBLE or unicodedata.category(char) in _HIDDEN_CATEGORIES


def has_hidden_characters(name: str) -> bool:
    """True when `name` holds invisible or control characters, or starts or ends with whitespace."""
    return name != name.strip() or any(_hidden(char) for char in name)


def _fold(text: str) -> str:
    """Compatibility forms, look-alikes and case folded; marks and hidden characters dropped; `/` kept."""
    text = unicodedata.normalize("NFKD", text.translate(_FOLD)).translate(_FOLD).casefold().translate(_FOLD)
    return "".join(char for char in text if char.isspace() or not (_hidden(char) or unicodedata.category(char) == "Mn"))


def _key(folded: str) -> str:
    return _SEPARATORS.sub("_", folded.strip())


@lru_cache(maxsize=4096)
def normalize_tool_name(name: str) -> str:
    """The comparison key of a tool name: ` KUBECTL-delete` and `kubectl__delete` give `kubectl_delete`."""
    return _key(_fold(name))


@lru_cache(maxsize=4096)
def name_forms(name: str) -> tuple[str, ...]:
    """The keys a tool name is checked under: the whole name, then its last `/` segment if that differs."""
    folded = _fold(name)
    forms = (_key(folded), _key(folded.rpartition("/")[2]))
    return tuple(dict.fromkeys(form for form in forms if form))


@lru_cache(maxsize=1024)
def normalize_glob(pattern: str) -> str:
    """A config glob folded like tool names; `[...]` classes keep their ranges and only fold case."""
    parts = _GLOB_CLASS.split(pattern)  # literal text at even indexes, [...] classes at odd ones
    folded = [_fold(part) if i % 2 == 0 else part.casefold() for i, part in enumerate(parts)]
    folded[0] = folded[0].lstrip()
    folded[-1] = folded[-1].rstrip()
    return "".join(_SEPARATORS.sub("_", part) if i % 2 == 0 else part for i, part in enumerate(folded))
