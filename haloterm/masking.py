"""Masking secret values, and the forms they take when a command re-encodes them.

A secret printed by a command rarely stays verbatim: ``base64`` wraps it, a URL
percent-encodes it, a JSON dump escapes it. :class:`SecretMasker` knows those derived
forms and replaces every occurrence of any of them with :data:`MASK`, using one
compiled regular expression whose alternatives are ordered longest first.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "******"
"""What every secret (and every derived form of it) is replaced with."""

_MIN_RAW = 3
_MIN_DERIVED = 4
_MIN_CASE_FOLDED = 8
_HEX_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _base64_forms(raw: bytes) -> set[str]:
    """The secret's base64 forms, whole and as found inside a longer base64 stream.

    Inside a stream the secret starts at one of three byte offsets modulo 3. For each
    offset, only the characters that depend on the secret's bytes alone are kept: the
    first ones mix in the preceding byte and the last one may mix in the next.
    """
    forms: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        if offset == 0:
            forms.add(encoded)
            forms.add(encoded.rstrip("="))
        start = (offset * 4 + 2) // 3
        end = ((offset + len(raw)) * 4) // 3
        core = encoded[start:end]
        if len(core) >= _MIN_DERIVED:
            forms.add(core)
    urlsafe = {f.replace("+", "-").replace("/", "_") for f in forms}
    return forms | urlsafe


_URL_KEPT = "!#$&'()*+,/:;=?@[]~"
"""What a URL library leaves as it is when it encodes a whole URL (httpx does)."""
_BASE64_LINE = 76
"""``base64`` wraps its output at 76 characters."""
_HEX_LINES = (60, 32)
"""``xxd -p`` wraps hex at 60 characters; ``xxd -p -c16`` and friends at 32."""
_MIN_CHUNK = 8


def _url_forms(secret: str) -> set[str]:
    upper = {
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        quote(secret, safe=_URL_KEPT),
    }
    lower = {_HEX_ESCAPE.sub(lambda m: m.group(0).lower(), f) for f in upper}
    return upper | lower


def _json_forms(secret: str) -> set[str]:
    return {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}


def _chunks(text: str, width: int) -> set[str]:
    """The lines ``text`` wraps into at ``width``, when it wraps, long ones only."""
    if len(text) <= width:
        return set()
    pieces = {text[i : i + width] for i in range(0, len(text), width)}
    return {piece for piece in pieces if len(piece) >= _MIN_CHUNK}


def derived_forms(secret: str) -> set[str]:
    """Every form of ``secret`` that :class:`SecretMasker` masks, the raw one included.

    Args:
        secret: the clear value.

    Returns:
        The raw value (when at least 3 characters long); for values of 4 or more
        characters its hex (either case), base64 (standard and URL-safe, padded or
        not, and the three alignments inside a longer stream), percent-encoded and
        JSON-escaped forms; from 8 characters its lower- and upper-cased forms.
    """
    if len(secret) < _MIN_RAW:
        return set()
    forms = {secret}
    if len(secret) >= _MIN_DERIVED:
        raw = secret.encode("utf-8")
        # Hex dumps show it in either case. A host name or a header is often
        # case-folded on the way (a URL's host shows lowercased in an error); for a
        # short secret those forms would hide ordinary words, so only from 8 on.
        forms |= {raw.hex(), raw.hex().upper()}
        # A long secret piped to base64 or xxd comes out over several lines, and
        # output is masked a line at a time: each line is a form of its own.
        encoded = base64.b64encode(raw).decode("ascii")
        forms |= _chunks(encoded, _BASE64_LINE)
        for width in _HEX_LINES:
            forms |= _chunks(raw.hex(), width) | _chunks(raw.hex().upper(), width)
        if len(secret) >= _MIN_CASE_FOLDED:
            forms |= {secret.lower(), secret.upper()}
        forms |= _base64_forms(raw)
        forms |= _url_forms(secret)
        forms |= _json_forms(secret)
    return {f for f in forms if len(f) >= _MIN_RAW}


class SecretMasker:
    """Replaces every secret of an execution, in all its derived forms, with ``******``.

    Multi-line secrets (keys, certificates) are also registered line by line, because
    output is masked one line at a time.

    Args:
        secrets: the clear values to mask from the start.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._longest = 0
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Start masking ``secret`` (values shorter than 3 characters are ignored)."""
        if not secret or secret in self._secrets:
            return
        self._secrets.add(secret)
        parts = [secret]
        if "\n" in secret:
            parts += [line.strip("\r") for line in secret.split("\n")]
        new: set[str] = set()
        for part in parts:
            new |= derived_forms(part)
        if new - self._forms:
            self._forms |= new
            self._compile()

    def _compile(self) -> None:
        ordered = sorted(self._forms, key=lambda f: (-len(f), f))
        self._pattern = re.compile("|".join(map(re.escape, ordered)))
        self._longest = len(ordered[0])

    def mask(self, text: str) -> str:
        """Return ``text`` with every known secret form replaced by :data:`MASK`."""
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def mask_partial(self, text: str) -> tuple[str, str]:
        """Mask the part of an unfinished text that no later text can change.

        Used for a line that is still arriving: a secret may straddle the end of
        ``text`` and the next chunk, so the last characters are held back.

        Args:
            text: the text received so far.

        Returns:
            ``(masked_prefix, rest)``: the masked head of ``text`` that is safe to
            hand on, and the clear tail to keep and prepend to what comes next.
        """
        pattern = self._pattern
        if pattern is None:
            return text, ""
        cut = len(text) - (self._longest - 1)
        if cut <= 0:
            return "", text
        for match in pattern.finditer(text, max(0, cut - self._longest)):
            if match.start() >= cut:
                break
            if match.end() > cut:
                cut = match.start()
                break
        return pattern.sub(MASK, text[:cut]), text[cut:]

    def __bool__(self) -> bool:
        return self._pattern is not None


class MaskingFilter(logging.Filter):
    """A logging filter that masks secrets in a record's message, traceback and stack.

    The message is formatted with its arguments first, so a secret passed as an
    argument is masked too; the record then carries the masked text and no arguments.

    Args:
        masker: the masker whose secrets to hide.
    """

    def __init__(self, masker: SecretMasker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place; always keeps it."""
        if not self.masker:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = f"{record.msg} {record.args!r}"
        record.msg = self.masker.mask(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.masker.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.masker.mask(record.stack_info)
        return True


def mask_tree(value: Any, mask: Callable[[str], str]) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with every string, keys
    included, passed through ``mask`` (:meth:`SecretMasker.mask` or a context's)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list | tuple):
        return [mask_tree(item, mask) for item in value]
    if isinstance(value, dict):
        return {mask(str(k)): mask_tree(v, mask) for k, v in value.items()}
    return value
