"""The real services the harness provides: Redis locks, SMTP delivery, the browser."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from emails.send import HardBounce, SmtpServer, TransientSendError, send
from jobs.locks import AlreadyRunning, singleton
from tests.conftest import SmtpCapture


def test_the_singleton_lock_keeps_a_second_run_out(redis_client: Any) -> None:
    prefix = redis_client.test_prefix
    with singleton(redis_client, "discover:okta-prod", 60, prefix=prefix):
        second = singleton(redis_client, "discover:okta-prod", 60, prefix=prefix)
        with pytest.raises(AlreadyRunning, match="discover:okta-prod"), second:
            pass
        with singleton(redis_client, "discover:entra-prod", 60, prefix=prefix):
            pass  # another tenant's run is not blocked
    with singleton(redis_client, "discover:okta-prod", 60, prefix=prefix):
        pass  # released on exit


def test_the_lock_expires_and_is_released_only_by_its_holder(redis_client: Any) -> None:
    prefix = redis_client.test_prefix
    with singleton(redis_client, "enforce:okta", 60, prefix=prefix):
        assert 0 < redis_client.ttl(prefix + "enforce:okta") <= 60
        redis_client.set(prefix + "enforce:okta", "someone-else")  # expired and re-taken
    assert redis_client.get(prefix + "enforce:okta") == b"someone-else"


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
