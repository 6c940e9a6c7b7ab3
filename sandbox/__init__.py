"""Local HTTPS emulators of the Okta, Microsoft Graph and Google APIs.

Used by tests, benchmarks and `recert demo` only; production code never imports this.
"""
