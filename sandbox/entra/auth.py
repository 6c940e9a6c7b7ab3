"""The Entra token endpoint's checks: client secret, or a certificate-signed assertion."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from sandbox.server import Response

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def make_certificate() -> tuple[bytes, bytes]:
    """A self-signed RSA certificate: (private key + certificate PEM, certificate PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recert-sandbox")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem + cert_pem, cert_pem


def client_authenticated(
    secret: str | None, certificate_pem: bytes | None, form: dict[str, str]
) -> bool:
    if secret is not None:
        return secrets.compare_digest(form.get("client_secret", ""), secret)
    if certificate_pem is None or form.get("client_assertion_type") != ASSERTION_TYPE:
        return False
    return assertion_valid(form.get("client_assertion", ""), certificate_pem, form["client_id"])


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def assertion_valid(assertion: str, certificate_pem: bytes, client_id: str) -> bool:
    try:
        header_b64, payload_b64, signature_b64 = assertion.split(".")
        header = json.loads(_b64(header_b64))
        payload = json.loads(_b64(payload_b64))
        signature = _b64(signature_b64)
    except ValueError:
        return False
    public_key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    scheme: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size)
        if header.get("alg") == "PS256"
        else padding.PKCS1v15()
    )
    try:
        public_key.verify(
            signature, f"{header_b64}.{payload_b64}".encode(), scheme, hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return payload.get("iss") == client_id and payload.get("sub") == client_id


def token_error(status: int, code: str, number: int, description: str) -> Response:
    return Response(
        status,
        {
            "error": code,
            "error_description": f"AADSTS{number}: {description}",
            "error_codes": [number],
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
    )
