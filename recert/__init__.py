"""Recert: access reviews for the non-human identities in Okta, Entra ID and Google."""

__version__ = "0.1.0"
