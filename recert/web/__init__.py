"""The owners' attestation pages (step 5): server-rendered, no JavaScript."""

from recert.web.app import create_app

__all__ = ["create_app"]
