"""`recert web`: the owners' attestation pages (step 5), the IAM report pages and the IAM
console (step 7). Server-rendered, no JavaScript."""

from recert.web.app import create_app

__all__ = ["create_app"]
