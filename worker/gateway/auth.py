"""Who is asking: the customer id in a JWT, verified with PyJWT; and minting one for local use.

The token comes as ``?token=`` (as in the tutorial) or as ``Authorization: Bearer`` (RFC 6750
§2.1), never both (RFC 6750 §2: one method per request). It must be signed with an algorithm the
configured key is for, and carry ``exp`` (enforced) and the customer claim (a UUID); ``aud`` and
``iss`` are checked when the settings name them. The key decides the algorithm, never the token:
HS256 for ``OUTPLAN_JWT_SECRET``; RS256 for an RSA ``OUTPLAN_JWT_PUBLIC_KEY``, ES256 for a P-256
one. So a token cannot pick ``none``, nor have an RSA public key read as an HMAC secret.
"""

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .settings import GatewaySettings

TOKEN_MISSING: Final = "TOKEN_MISSING"
TOKEN_EXPIRED: Final = "TOKEN_EXPIRED"
TOKEN_BAD_SIGNATURE: Final = "TOKEN_BAD_SIGNATURE"
TOKEN_MALFORMED: Final = "TOKEN_MALFORMED"
TOKEN_ALGORITHM_REFUSED: Final = "TOKEN_ALGORITHM_REFUSED"
TOKEN_CLAIMS_INVALID: Final = "TOKEN_CLAIMS_INVALID"
TOKEN_TWICE: Final = "TOKEN_TWICE"
VERIFIED_CACHE_SIZE: Final = 10_000  # tokens remembered as verified, most recently used kept


class Unauthenticated(Exception):
    """No usable token: ``reason`` is one of this module's ``TOKEN_*`` names, the message one line
    saying what is wrong and what to send. Answered 401 (400 for ``TOKEN_TWICE``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class KeyProblem(ValueError):
    """The configured key cannot verify tokens (no key, a PEM that is not an RSA or P-256 public key)."""


@dataclass(frozen=True)
class _Key:
    algorithm: str
    key: Any  # bytes (HS256) or a cryptography public key


@dataclass(frozen=True)
class Verifier:
    """Verifies tokens with the keys of ``settings``; ``customer(token)`` is the customer's UUID.

    A client sends the same token with every call until it expires, and verifying it (parsing,
    the signature) is most of what the gateway spends on a call, so a token that passed is
    remembered, with its ``exp``, for the next ``VERIFIED_CACHE_SIZE`` distinct tokens: a
    remembered token is only checked against the clock again. Nothing else can change: the keys
    and the rules are fixed for the process's life, and ``nbf`` and ``iat``, once passed, stay
    passed. Refused tokens are not remembered.
    """

    keys: dict[str, _Key]
    claim: str
    audience: str | None
    issuer: str | None
    leeway: float
    algorithms: list[str] = field(init=False)
    _verified: "OrderedDict[str, tuple[uuid.UUID, float]]" = field(
        init=False, default_factory=OrderedDict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithms", sorted(self.keys))

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> "Verifier":
        """The verifier for ``settings``' keys; raises ``KeyProblem`` when there is none, or when the
        public key is neither RSA (at least 2048 bits, RFC 7518 §3.3) nor EC on P-256 (ES256)."""
        keys: dict[str, _Key] = {}
        if settings.jwt_secret is not None:
            keys["HS256"] = _Key("HS256", settings.jwt_secret.get_secret_value().encode())
        if settings.jwt_public_key is not None:
            try:
                public = load_pem_public_key(settings.jwt_public_key.encode())
            except ValueError as exc:
                raise KeyProblem(f"OUTPLAN_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from None
            if isinstance(public, rsa.RSAPublicKey):
                if public.key_size < 2048:
                    raise KeyProblem(
                        f"OUTPLAN_JWT_PUBLIC_KEY: an RSA key of {public.key_size} bits; RS256 needs at"
                        " least 2048 (RFC 7518 §3.3)"
                    )
                keys["RS256"] = _Key("RS256", public)
            elif isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
                keys["ES256"] = _Key("ES256", public)
            else:
                raise KeyProblem(
                    "OUTPLAN_JWT_PUBLIC_KEY must be an RSA key (RS256) or an EC key on P-256 (ES256)"
                )
        if not keys:
            raise KeyProblem(
                "no key to verify tokens with: set OUTPLAN_JWT_SECRET (HS256) or OUTPLAN_JWT_PUBLIC_KEY"
                " (a PEM: RS256 or ES256)"
            )
        return cls(
            keys=keys,
            claim=settings.jwt_customer_claim,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
        )

    def customer(self, token: str) -> uuid.UUID:
        """The customer id the token carries, once verified; raises ``Unauthenticated`` saying why not."""
        remembered = self._verified.get(token)
        if remembered is not None:
            customer, expires = remembered
            if time.time() <= expires + self.leeway:
                self._verified.move_to_end(token)
                return customer
            del self._verified[token]
            raise Unauthenticated(TOKEN_EXPIRED, "the token has expired (exp); get a new one")
        customer, expires = self._verify(token)
        self._verified[token] = (customer, expires)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return customer

    def _verify(self, token: str) -> tuple[uuid.UUID, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise Unauthenticated(TOKEN_MALFORMED, f"the token is not a JWT: {exc}") from None
        algorithm = header.get("alg")
        key = self.keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None:
            raise Unauthenticated(
                TOKEN_ALGORITHM_REFUSED,
                f"the token is signed with {algorithm!r}; this gateway accepts " + ", ".join(self.algorithms),
            )
        required = ["exp", self.claim] + (["aud"] if self.audience else []) + (["iss"] if self.issuer else [])
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": required, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(TOKEN_EXPIRED, "the token has expired (exp); get a new one") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated(
                TOKEN_BAD_SIGNATURE, "the token's signature does not verify with this gateway's key"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(TOKEN_CLAIMS_INVALID, f"the token lacks the {exc.claim!r} claim") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError, jwt.ImmatureSignatureError) as exc:
            raise Unauthenticated(TOKEN_CLAIMS_INVALID, f"the token's claims are refused: {exc}") from None
        except jwt.InvalidTokenError as exc:  # DecodeError and the rest: not a token we can read
            raise Unauthenticated(TOKEN_MALFORMED, f"the token cannot be read: {exc}") from None
        value = claims[self.claim]
        try:
            customer = uuid.UUID(value) if isinstance(value, str) else _not_uuid(self.claim)
        except ValueError:
            customer = _not_uuid(self.claim)
        return customer, float(claims["exp"])


def _not_uuid(claim: str) -> uuid.UUID:
    raise Unauthenticated(TOKEN_CLAIMS_INVALID, f"the token's {claim!r} claim must be a customer id (a UUID)")


def token_from(query_token: str | None, authorization: str | None) -> str:
    """The token of a request: ``?token=`` or ``Authorization: Bearer <token>`` (the scheme in any
    case, RFC 6750 §2.1). Raises ``Unauthenticated``: ``TOKEN_MISSING`` when there is none (or the
    header is not Bearer), ``TOKEN_TWICE`` when both are sent."""
    bearer = None
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            bearer = credentials.strip()
    if query_token and bearer:
        raise Unauthenticated(
            TOKEN_TWICE, "send the token once: either ?token= or Authorization: Bearer (RFC 6750 §2)"
        )
    token = bearer or query_token
    if not token:
        raise Unauthenticated(
            TOKEN_MISSING, "no token: send ?token=<JWT> or the header Authorization: Bearer <JWT>"
        )
    return token


def mint(
    settings: GatewaySettings, customer_id: uuid.UUID, *, ttl: int | None = None, now: float | None = None
) -> str:
    """An HS256 token for ``customer_id`` signed with ``OUTPLAN_JWT_SECRET``, valid ``ttl`` seconds
    (``token_ttl_seconds`` when ``None``), with ``iat``, ``exp`` and, when configured, ``aud`` and
    ``iss``. Raises ``KeyProblem`` when no secret is configured (a public key cannot sign)."""
    if settings.jwt_secret is None:
        raise KeyProblem(
            "no OUTPLAN_JWT_SECRET: tokens are minted with the HS256 secret the gateway verifies; "
            "with only a public key, get tokens from whoever holds the private key"
        )
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        settings.jwt_customer_claim: str(customer_id),
        "iat": issued,
        "exp": issued + (settings.token_ttl_seconds if ttl is None else ttl),
    }
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
