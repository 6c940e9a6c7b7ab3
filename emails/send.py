"""SMTP delivery with the failures a sender must tell apart.

A permanent refusal of the recipient (5xx at RCPT) is a hard bounce: retrying will not
help and the caller escalates. Everything else that fails is transient: retry later.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = 30.0
    ca_bundle: str | None = None


class SendError(Exception):
    pass


class HardBounce(SendError):
    """The server permanently refused a recipient."""

    def __init__(self, recipients: dict[str, tuple[int, bytes]]) -> None:
        self.recipients = recipients
        refused = ", ".join(f"{r} ({code})" for r, (code, _) in recipients.items())
        super().__init__(f"permanently refused: {refused}")


class TransientSendError(SendError):
    """Connection, timeout or 4xx: worth retrying with backoff."""


def send(server: SmtpServer, message: EmailMessage) -> str:
    """Deliver one message; returns its Message-ID (set here when missing)."""
    if "Message-ID" not in message:
        message["Message-ID"] = make_msgid(domain=_domain(message))
    try:
        with smtplib.SMTP(server.host, server.port, timeout=server.timeout_seconds) as smtp:
            if server.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=server.ca_bundle))
            if server.username and server.password:
                smtp.login(server.username, server.password)
            refused = smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as error:
        permanent = {r: v for r, v in error.recipients.items() if 500 <= v[0] < 600}
        if permanent:
            raise HardBounce(permanent) from error
        raise TransientSendError(str(error)) from error
    except smtplib.SMTPResponseException as error:
        if 500 <= error.smtp_code < 600 and not isinstance(error, smtplib.SMTPSenderRefused):
            raise SendError(f"{error.smtp_code} {error.smtp_error!r}") from error
        raise TransientSendError(f"{error.smtp_code} {error.smtp_error!r}") from error
    except (smtplib.SMTPException, OSError) as error:
        raise TransientSendError(str(error) or type(error).__name__) from error
    permanent = {r: v for r, v in refused.items() if 500 <= v[0] < 600}
    if permanent:
        raise HardBounce(permanent)
    return str(message["Message-ID"])


def _domain(message: EmailMessage) -> str:
    sender = str(message.get("From", "recert@localhost"))
    return sender.rsplit("@", 1)[-1].strip("> ") or "localhost"
