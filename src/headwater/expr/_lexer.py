"""A small CEL tokenizer: just enough to find field paths, macro variables and calls.

It only ever runs on sources the `cel` library has already parsed, so it does not report
syntax errors. Its one duty is never to mistake the inside of a string literal or a comment
for code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TokenKind = Literal["ident", "string", "number", "punct"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    # For a string literal: its content when it is a plain (non-bytes) string whose content
    # can be read without decoding escapes; otherwise None.
    value: str | None = None


_SKIP = re.compile(r"(?:[ \t\r\n\f]+|//[^\n]*)+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+[uU]?"
    r"|[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?"
    r"|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
    r"|[0-9]+[eE][+-]?[0-9]+"
    r"|[0-9]+[uU]?"
)
# A string prefix (raw and/or bytes) immediately followed by a quote.
_STRING_PREFIX = re.compile(r"(?:[rR][bB]?|[bB][rR]?)?(?=['\"])")
_ESCAPED_BODY = {
    "'''": re.compile(r"'''(?:\\.|[^\\])*?'''", re.DOTALL),
    '"""': re.compile(r'"""(?:\\.|[^\\])*?"""', re.DOTALL),
    "'": re.compile(r"'(?:\\.|[^'\\\n])*'"),
    '"': re.compile(r'"(?:\\.|[^"\\\n])*"'),
}
_RAW_BODY = {
    "'''": re.compile(r"'''.*?'''", re.DOTALL),
    '"""': re.compile(r'""".*?"""', re.DOTALL),
    "'": re.compile(r"'[^'\n]*'"),
    '"': re.compile(r'"[^"\n]*"'),
}
_TWO_CHAR_PUNCT = frozenset({"==", "!=", "<=", ">=", "&&", "||"})


def tokenize(source: str) -> list[Token]:
    """Split `source` into tokens, dropping whitespace and `//` comments."""
    tokens: list[Token] = []
    pos = 0
    end = len(source)
    while pos < end:
        skipped = _SKIP.match(source, pos)
        if skipped:
            pos = skipped.end()
            continue
        prefix = _STRING_PREFIX.match(source, pos)
        if prefix:
            token, pos = _string(source, pos, prefix.end())
            tokens.append(token)
            continue
        ident = _IDENT.match(source, pos)
        if ident:
            tokens.append(Token("ident", ident.group()))
            pos = ident.end()
            continue
        number = _NUMBER.match(source, pos)
        if number:
            tokens.append(Token("number", number.group()))
            pos = number.end()
            continue
        two = source[pos : pos + 2]
        width = 2 if two in _TWO_CHAR_PUNCT else 1
        tokens.append(Token("punct", source[pos : pos + width]))
        pos += width
    return tokens


def _string(source: str, start: int, quote_at: int) -> tuple[Token, int]:
    prefix = source[start:quote_at].lower()
    raw = "r" in prefix
    quote = source[quote_at : quote_at + 3]
    if quote not in ("'''", '"""'):
        quote = source[quote_at]
    body = (_RAW_BODY if raw else _ESCAPED_BODY)[quote].match(source, quote_at)
    if body is None:  # unterminated: cannot happen for a source the library parsed
        return Token("string", source[start:]), len(source)
    content = body.group()[len(quote) : -len(quote)]
    plain = "b" not in prefix and (raw or "\\" not in content)
    return Token("string", source[start : body.end()], content if plain else None), body.end()
