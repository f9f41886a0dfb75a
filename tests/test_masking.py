"""Secret masking: raw and derived forms, longest first, logging (CASES C27)."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from urllib.parse import quote, quote_plus

import pytest

from haloterm.masking import MASK, MaskingFilter, SecretMasker, derived_forms

SECRET = "S3cr3t!pw"


def test_raw_secret_masked_everywhere_in_line() -> None:
    masker = SecretMasker([SECRET])
    assert masker.mask(f"pw={SECRET} again:{SECRET}.") == f"pw={MASK} again:{MASK}."


def test_empty_masker_is_false_and_leaves_text_alone() -> None:
    masker = SecretMasker()
    assert not masker
    masker.add("")
    assert not masker
    assert masker.mask("nothing to hide") == "nothing to hide"
    masker.add(SECRET)
    assert masker


def test_longest_secret_wins() -> None:
    masker = SecretMasker(["abcd", "abcdefgh"])
    assert masker.mask("xabcdefghx") == f"x{MASK}x"


@pytest.mark.parametrize(
    "encode",
    [
        base64.b64encode,
        base64.urlsafe_b64encode,
        lambda raw: base64.b64encode(raw).rstrip(b"="),
        lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"="),
    ],
)
@pytest.mark.parametrize("secret", [SECRET, "p>?s~w0rd", "abcd", "abcde"])
def test_base64_of_the_secret_alone(encode: object, secret: str) -> None:
    assert callable(encode)
    text = encode(secret.encode()).decode()
    assert SecretMasker([secret]).mask(f"x {text} y") == f"x {MASK} y"


def _secret_chars(offset: int, size: int) -> tuple[int, int]:
    """Base64 characters of a stream that depend only on bytes offset..offset+size."""
    first = -(-offset * 8 // 6)
    last = (offset + size) * 8 // 6
    return first, last


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("secret", [SECRET, "abcd", "0123456789abcdef"])
def test_secret_inside_a_longer_base64_stream(offset: int, secret: str) -> None:
    raw = b"k" * offset + secret.encode() + b"-tail-of-the-blob"
    for encoder in (base64.b64encode, base64.urlsafe_b64encode):
        stream = encoder(raw).decode()
        first, last = _secret_chars(offset, len(secret))
        masked = SecretMasker([secret]).mask(stream)
        assert MASK in masked
        assert stream[first:last] not in masked


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


@pytest.mark.parametrize("secret", [SECRET, "a b/c+d&e=f", "pässwörd", "x%41y"])
def test_url_encoded_forms(secret: str) -> None:
    masker = SecretMasker([secret])
    for form in {quote(secret, safe=""), quote(secret), quote_plus(secret)}:
        for variant in {form, _lower_hex(form)}:
            assert masker.mask(f"url?p={variant}&q=1") == f"url?p={MASK}&q=1", variant


def test_json_escaped_form() -> None:
    secret = 'pa"ss\\wo\nrd'
    masker = SecretMasker([secret])
    dumped = json.dumps({"password": secret})
    assert secret[:4] not in masker.mask(dumped)
    assert masker.mask(dumped) == json.dumps({"password": MASK})
    non_ascii = "gehéim-wört"
    assert MASK in SecretMasker([non_ascii]).mask(json.dumps(non_ascii))


def test_case_folded_and_hex_forms() -> None:
    """A host name in an error shows lowercased; a hex dump in either case."""
    masker = SecretMasker(["Qw7RtY3uIo9p"])
    text = (
        "cannot resolve host: qw7rty3uio9p.invalid; QW7RTY3UIO9P; "
        + b"Qw7RtY3uIo9p".hex()
        + " "
        + b"Qw7RtY3uIo9p".hex().upper()
    )
    assert masker.mask(text) == (
        "cannot resolve host: ******.invalid; ******; ****** ******"
    )


def test_multi_line_secret_masked_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nAAAABBBBCCCC\nDDDDEEEE\n-----END KEY-----"
    masker = SecretMasker([key])
    for line in key.split("\n"):
        assert masker.mask(line) == MASK


def test_short_secrets() -> None:
    assert SecretMasker(["ab"]).mask("ab cd") == "ab cd"
    three = SecretMasker(["abc"])
    assert three.mask("xabcx") == f"x{MASK}x"
    assert three.mask(base64.b64encode(b"abc").decode()) == "YWJj"
    assert derived_forms("abc") == {"abc"}
    assert base64.b64encode(b"abcd").decode() in derived_forms("abcd")


def test_mask_partial_holds_back_a_secret_that_may_continue() -> None:
    masker = SecretMasker([SECRET])
    done, rest = masker.mask_partial("x" * 100 + SECRET[:4])
    assert done + rest == "x" * 100 + SECRET[:4]
    assert SECRET[:4] in rest
    for tail in range(20):
        text = "y" * 50 + SECRET + "y" * tail
        done, rest = masker.mask_partial(text)
        assert SECRET not in done
        assert done + masker.mask(rest) == masker.mask(text)


def test_masking_filter_masks_args_and_tracebacks() -> None:
    masker = SecretMasker([SECRET])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter(masker))
    logger = logging.getLogger("tests.masking")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("password is %s, b64 %s", SECRET, base64.b64encode(b"S3cr3t!pw"))
        try:
            raise RuntimeError(f"connect failed for app:{quote(SECRET)}@host")
        except RuntimeError:
            logger.exception("step failed")
        logger.warning("bad format %s %s", SECRET)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = stream.getvalue()
    assert "RuntimeError" in text
    assert "step failed" in text
    for form in (SECRET, quote(SECRET), base64.b64encode(SECRET.encode()).decode()):
        assert form not in text
    assert text.count(MASK) >= 4


def test_mask_is_fast_enough_on_long_text() -> None:
    """Not a timing assert: one pass over 10 MB with many secrets must just work."""
    masker = SecretMasker([f"secret-number-{i:03d}" for i in range(50)])
    text = ("ordinary log text with nothing to hide " * 250_000) + "secret-number-042"
    assert masker.mask(text).endswith(MASK)


def test_a_long_secret_wrapped_by_base64_or_xxd_is_masked_line_by_line() -> None:
    """Output is masked a line at a time; base64 wraps at 76, xxd -p at 60."""
    import base64
    import textwrap

    secret = "Kx9p-" * 13  # 65 bytes: two base64 lines, three xxd lines
    masker = SecretMasker([secret])
    encoded = base64.b64encode(secret.encode()).decode()
    for line in textwrap.wrap(encoded, 76):
        assert secret[:8] not in masker.mask(line)
        assert masker.mask(line) == "******", line
    for line in textwrap.wrap(secret.encode().hex(), 60):
        assert masker.mask(line) == "******", line


def test_a_secret_in_a_url_as_an_http_library_encodes_it() -> None:
    secret = "Kx9#p@ss w/rd+&=?Ünï7"
    masker = SecretMasker([secret])
    shown = "> GET https://api.example/x?token=Kx9#p@ss%20w/rd+&=?%C3%9Cn%C3%AF7"
    assert masker.mask(shown) == "> GET https://api.example/x?token=******"
