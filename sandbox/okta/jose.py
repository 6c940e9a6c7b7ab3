"""Just enough JOSE for the emulator to check what Okta checks: compact JWS signatures
(RS256, ES256), JWK public keys and their RFC 7638 thumbprints, and DPoP proofs (RFC 9449).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class JoseError(ValueError):
    """Why a token or proof is refused, in Okta's `error_description` words."""


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    members = ("e", "kty", "n") if jwk.get("kty") == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64encode(hashlib.sha256(canonical.encode()).digest())


def public_key(jwk: dict[str, Any]) -> PublicKey:
    try:
        if jwk.get("kty") == "RSA":
            n = int.from_bytes(b64decode(jwk["n"]), "big")
            e = int.from_bytes(b64decode(jwk["e"]), "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            x = int.from_bytes(b64decode(jwk["x"]), "big")
            y = int.from_bytes(b64decode(jwk["y"]), "big")
            return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except (KeyError, ValueError) as error:
        raise JoseError(f"The JWK is not a valid public key: {error}") from None
    raise JoseError("The JWK key type is not supported.")


@dataclass(frozen=True)
class Jws:
    header: dict[str, Any]
    claims: dict[str, Any]


def verify(token: str, key: PublicKey | None = None) -> Jws:
    """Parse and check a compact JWS; `key` None takes the `jwk` of its own header."""
    try:
        head_b64, body_b64, signature_b64 = token.split(".")
        header = json.loads(b64decode(head_b64))
        claims = json.loads(b64decode(body_b64))
        signature = b64decode(signature_b64)
    except ValueError:
        raise JoseError("The token is not a valid compact JWS.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JoseError("The token is not a valid compact JWS.")
    if key is None:
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or any(p in jwk for p in ("d", "p", "q")):
            raise JoseError("The DPoP proof must carry a public JWK in its header.")
        key = public_key(jwk)
    signed = f"{head_b64}.{body_b64}".encode()
    try:
        if header.get("alg") == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        elif header.get("alg") == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            der = encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            )
            key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        else:
            raise JoseError("The signature algorithm is not supported.")
    except InvalidSignature:
        raise JoseError("The signature is invalid.") from None
    return Jws(header, claims)


def token_hash(access_token: str) -> str:
    """The `ath` claim: base64url SHA-256 of the access token (RFC 9449 4.1)."""
    return b64encode(hashlib.sha256(access_token.encode()).digest())
