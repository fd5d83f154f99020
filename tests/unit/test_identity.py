"""Identity without a server: key format and hashing, expiry parsing, the permission table, JWT checks."""
import time

import jwt
import pytest

from services.identity import PERMISSIONS, ROLES, InvalidCredentials, InvalidKeyRequest, allowed, permission_matrix
from services.identity.keys import digest, generate, parse, parse_duration
from services.identity.tokens import JwtVerifier

SECRET = "unit-test-hs256-secret-of-32-bytes!!"


def test_generated_keys_parse_and_are_unique():
    prefix, key = generate()
    assert key.startswith(f"aietl_{prefix}_")
    assert parse(key)[0] == prefix
    assert len({generate()[1] for _ in range(200)}) == 200


@pytest.mark.parametrize("bad", ["", "aietl_", "aietl_zzzzzzzz_" + "a" * 43, "Bearer x", "aietl_0123abcd_short"])
def test_malformed_keys_do_not_parse(bad):
    assert parse(bad) is None


def test_digest_is_sha256_and_differs_per_key():
    _, a = generate()
    _, b = generate()
    assert len(digest(a)) == 32 and digest(a) != digest(b) and digest(a) == digest(a)


def test_durations():
    assert parse_duration("30d").total_seconds() == 30 * 86400
    assert parse_duration("90m").total_seconds() == 5400
    assert parse_duration(None) is None
    for bad in ("0d", "30", "d", "3y", "-1h"):
        with pytest.raises(InvalidKeyRequest):
            parse_duration(bad)


def test_roles_are_ordered_and_unknown_permissions_fail_closed():
    assert allowed("viewer", "pipelines.read") and not allowed("viewer", "pipelines.write")
    assert allowed("editor", "pipelines.write") and not allowed("editor", "webhooks.secret")
    assert all(allowed("admin", perm) for perm in PERMISSIONS)
    assert not allowed("admin", "no.such.permission") and not allowed("root", "pipelines.read")
    for perm, held in permission_matrix():
        # holding is monotone in the role order
        flags = [held[role] for role in ROLES]
        assert flags == sorted(flags), perm


def _token(secret=SECRET, **claims):
    body = {"sub": "alice", "tenant": "acme", "role": "editor", "exp": int(time.time()) + 60, **claims}
    return jwt.encode(body, secret, algorithm="HS256")


def test_jwt_with_right_claims_gives_a_principal():
    verifier = JwtVerifier(secret=SECRET, audience="aietl", issuer="idp")
    principal = verifier.verify(_token(aud="aietl", iss="idp"))
    assert (principal.tenant, principal.role, principal.subject) == ("acme", "editor", "jwt:alice")


@pytest.mark.parametrize("token", [
    _token(secret="another-hs256-secret-of-32-bytes!!", aud="aietl", iss="idp"),
    _token(aud="aietl", iss="idp", exp=int(time.time()) - 10),
    _token(aud="other", iss="idp"),
    _token(aud="aietl", iss="evil"),
    _token(aud="aietl", iss="idp", role="root"),
    _token(aud="aietl", iss="idp", tenant=""),
])
def test_bad_jwts_are_refused(token):
    with pytest.raises(InvalidCredentials):
        JwtVerifier(secret=SECRET, audience="aietl", issuer="idp").verify(token)


def test_jwt_without_exp_or_config_is_refused():
    no_exp = jwt.encode({"tenant": "acme", "role": "admin"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidCredentials):
        JwtVerifier(secret=SECRET).verify(no_exp)
    with pytest.raises(InvalidCredentials):
        JwtVerifier().verify(_token())


def test_security_doc_table_matches_the_permission_table():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md").read_text()
    for perm, held in permission_matrix():
        row = f"| `{perm}` | " + " | ".join("yes" if held[role] else "—" for role in ROLES) + " |"
        assert row in doc, f"docs/SECURITY.md §9 lacks or misstates: {row}"
