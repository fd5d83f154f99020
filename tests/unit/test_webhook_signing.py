"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<raw body>", checked in constant time within a window."""
import hashlib
import hmac
import re

import pytest

from services.triggers.webhooks import (SignatureError, StaleTimestampError, WebhookError, hook_secret, sign,
                                        verify)

NOW = 1_700_000_000
BODY = b'{"file": "batch_0001.csv"}'
SECRET = hook_secret("server-key", "3f1c2b1e-0000-4000-8000-000000000001")


def test_a_signed_delivery_verifies_and_returns_its_timestamp_and_canonical_signature():
    sig = sign(SECRET, NOW, BODY)
    assert verify(SECRET, str(NOW), sig, BODY, now=NOW + 10) == (NOW, sig)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_so_any_client_can_compute_it():
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"sha256={expected}"


def test_hook_secrets_are_derived_per_hook_and_per_server_key_and_are_stable():
    assert hook_secret("k", "a") == hook_secret("k", "a")
    assert len({hook_secret("k", "a"), hook_secret("k", "b"), hook_secret("k2", "a")}) == 3
    assert hook_secret("k", "a") == hmac.new(b"k", b"aietl-webhook:a", hashlib.sha256).hexdigest()
    with pytest.raises(ValueError):
        hook_secret("", "a")


def test_each_rotation_generation_gives_the_hook_another_secret():
    secrets = [hook_secret("k", "a", generation) for generation in range(4)]
    assert len(set(secrets)) == 4 and secrets[0] == hook_secret("k", "a")
    assert secrets[2] == hmac.new(b"k", b"aietl-webhook:a:2", hashlib.sha256).hexdigest()


def test_a_tampered_body_is_rejected():
    sig = sign(SECRET, NOW, BODY)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, str(NOW), sig, BODY.replace(b"0001", b"0002"), now=NOW)


def test_a_re_dated_delivery_is_rejected_because_the_timestamp_is_signed():
    sig = sign(SECRET, NOW, BODY)
    with pytest.raises(SignatureError):
        verify(SECRET, str(NOW + 60), sig, BODY, now=NOW + 60)


def test_a_signature_made_with_another_secret_is_rejected():
    other = hook_secret("server-key", "another-hook")
    with pytest.raises(SignatureError):
        verify(SECRET, str(NOW), sign(other, NOW, BODY), BODY, now=NOW)


def test_any_of_several_secrets_is_accepted_during_a_key_rotation():
    old = hook_secret("old-key", "h")
    new = hook_secret("new-key", "h")
    assert verify([new, old], str(NOW), sign(old, NOW, BODY), BODY, now=NOW)[0] == NOW
    with pytest.raises(SignatureError):
        verify([new], str(NOW), sign(old, NOW, BODY), BODY, now=NOW)


@pytest.mark.parametrize("skew, word", [(-301, "old"), (-360, "old"), (301, "future"), (3600, "future")])
def test_correctly_signed_but_stale_or_future_timestamps_are_rejected_saying_so(skew, word):
    ts = NOW + skew
    with pytest.raises(StaleTimestampError, match=word) as info:
        verify(SECRET, str(ts), sign(SECRET, ts, BODY), BODY, now=NOW)
    assert "300" in str(info.value)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_at_the_edges_of_the_window_are_accepted(skew):
    ts = NOW + skew
    assert verify(SECRET, str(ts), sign(SECRET, ts, BODY), BODY, now=NOW)[0] == ts


def test_the_window_is_configurable():
    ts = NOW - 100
    with pytest.raises(StaleTimestampError, match="60"):
        verify(SECRET, str(ts), sign(SECRET, ts, BODY), BODY, now=NOW, window_s=60)


def test_a_bad_signature_is_reported_as_such_even_when_the_timestamp_is_stale_too():
    with pytest.raises(SignatureError):
        verify(SECRET, str(NOW - 3600), "sha256=" + "0" * 64, BODY, now=NOW)


@pytest.mark.parametrize("ts, sig, fragment", [
    (None, "sha256=" + "a" * 64, "missing X-Aietl-Timestamp"),
    ("", "sha256=" + "a" * 64, "missing X-Aietl-Timestamp"),
    ("1700000000.5", "sha256=" + "a" * 64, "whole unix seconds"),
    ("-5", "sha256=" + "a" * 64, "whole unix seconds"),
    ("yesterday", "sha256=" + "a" * 64, "whole unix seconds"),
    (str(NOW), None, "missing X-Aietl-Signature"),
    (str(NOW), "", "missing X-Aietl-Signature"),
    (str(NOW), "a" * 64, "sha256=<64 hex digits>"),
    (str(NOW), "sha1=" + "a" * 40, "sha256=<64 hex digits>"),
    (str(NOW), "sha256=" + "z" * 64, "sha256=<64 hex digits>"),
    (str(NOW), "sha256=" + "a" * 63, "sha256=<64 hex digits>"),
])
def test_malformed_headers_are_signature_errors_with_a_clear_message(ts, sig, fragment):
    with pytest.raises(SignatureError, match=re.escape(fragment)):
        verify(SECRET, ts, sig, BODY, now=NOW)


def test_signature_hex_case_does_not_matter_and_is_canonicalised():
    sig = sign(SECRET, NOW, BODY)
    upper = "SHA256=" + sig[len("sha256="):].upper()
    assert verify(SECRET, f" {NOW} ", upper, BODY, now=NOW) == (NOW, sig)


def test_every_failure_is_a_webhook_error():
    assert issubclass(SignatureError, WebhookError) and issubclass(StaleTimestampError, WebhookError)
