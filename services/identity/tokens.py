"""Optional JWT bearer tokens (pyjwt): HS256 with a shared secret, or RS/ES with a public key or a JWKS URL.

Tenant and role come from configurable claims (``jwt_tenant_claim``, ``jwt_role_claim``); ``exp`` is
required, ``aud``/``iss`` are checked when configured. Unconfigured (no secret, key or JWKS URL): every JWT
is refused, so tokens are opt-in.
"""
from __future__ import annotations

from typing import Optional

from services.identity import InvalidCredentials, Principal, ROLES


class JwtVerifier:
    def __init__(self, secret: Optional[str] = None, public_key: Optional[str] = None,
                 jwks_url: Optional[str] = None, audience: Optional[str] = None, issuer: Optional[str] = None,
                 tenant_claim: str = "tenant", role_claim: str = "role"):
        self._secret, self._public_key, self._jwks_url = secret, public_key, jwks_url
        self._audience, self._issuer = audience, issuer
        self._tenant_claim, self._role_claim = tenant_claim, role_claim
        self._jwks = None

    @property
    def enabled(self) -> bool:
        return bool(self._secret or self._public_key or self._jwks_url)

    def _key_and_algorithms(self, token: str):
        if self._secret:
            return self._secret, ["HS256"]
        if self._public_key:
            return self._public_key, ["RS256", "ES256"]
        import jwt

        if self._jwks is None:
            self._jwks = jwt.PyJWKClient(self._jwks_url, cache_keys=True, lifespan=300)
        return self._jwks.get_signing_key_from_jwt(token).key, ["RS256", "ES256"]

    def verify(self, token: str) -> Principal:
        if not self.enabled:
            raise InvalidCredentials("JWT bearer tokens are not enabled")
        import jwt  # imported here: no work at import time

        try:
            key, algorithms = self._key_and_algorithms(token)
            claims = jwt.decode(token, key, algorithms=algorithms, audience=self._audience, issuer=self._issuer,
                                options={"require": ["exp"], "verify_aud": self._audience is not None})
        except jwt.ExpiredSignatureError:
            raise InvalidCredentials("token expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidCredentials(f"invalid token: {exc}") from None
        tenant, role = claims.get(self._tenant_claim), claims.get(self._role_claim)
        if not isinstance(tenant, str) or not tenant or role not in ROLES:
            raise InvalidCredentials(f"token lacks a tenant ({self._tenant_claim}) or a role ({self._role_claim})")
        return Principal(tenant=tenant, role=role, subject=f"jwt:{claims.get('sub', '')}", key_id=None)


def build_verifier(settings) -> JwtVerifier:
    get = lambda name, default=None: getattr(settings, name, default)  # noqa: E731
    return JwtVerifier(get("jwt_secret"), get("jwt_public_key"), get("jwt_jwks_url"), get("jwt_audience"),
                       get("jwt_issuer"), get("jwt_tenant_claim") or "tenant", get("jwt_role_claim") or "role")


__all__ = ["JwtVerifier", "build_verifier"]
