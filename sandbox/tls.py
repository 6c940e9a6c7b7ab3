"""A certificate authority made for one run, so emulators serve real TLS on loopback."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class SandboxCA:
    ca: trustme.CA
    ca_bundle: Path  # PEM a client trusts, given to connectors as `ca_bundle`

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(context)
        return context


def make_ca(directory: Path) -> SandboxCA:
    """Create a CA and write its certificate to `directory/sandbox-ca.pem`."""
    ca = trustme.CA(organization_name="Recert sandbox")
    directory.mkdir(parents=True, exist_ok=True)
    bundle = directory / "sandbox-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return SandboxCA(ca=ca, ca_bundle=bundle)
