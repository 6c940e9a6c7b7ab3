"""The real services the harness provides: SMTP delivery, the browser (locks: test_locks)."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from emails.send import HardBounce, SmtpServer, TransientSendError, send
from tests.conftest import SmtpCapture


def message(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "recert@acme.test"
    msg["To"] = to
    msg["Subject"] = "Please review 3 apps"
    msg.set_content("plain")
    msg.add_alternative("<p>html</p>", subtype="html")
    return msg


def test_mail_is_delivered_over_real_smtp(smtp_server: SmtpCapture) -> None:
    server = SmtpServer(host=smtp_server.host, port=smtp_server.port)
    message_id = send(server, message("ann@acme.test"))
    [received] = smtp_server.to("ann@acme.test")
    assert received.message["Message-ID"] == message_id
    assert received.message.is_multipart()


def test_a_permanent_refusal_is_a_hard_bounce(smtp_server: SmtpCapture) -> None:
    smtp_server.refuse.add("gone@acme.test")
    with pytest.raises(HardBounce, match=r"gone@acme\.test"):
        send(SmtpServer(host=smtp_server.host, port=smtp_server.port), message("gone@acme.test"))
    assert smtp_server.messages == []


def test_an_unreachable_server_is_transient() -> None:
    with pytest.raises(TransientSendError):
        send(SmtpServer(host="127.0.0.1", port=1, timeout_seconds=2), message("a@acme.test"))


def test_the_browser_renders_a_page(browser: Any) -> None:
    page = browser.new_page()
    page.set_content("<h1 id='t'>Recert</h1><script>document.title='ok'</script>")
    assert page.text_content("#t") == "Recert"
    assert page.title() == "ok"
    page.close()
