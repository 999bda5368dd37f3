"""Email webhooks (smtp:// and smtps://) into a real SMTP server started by the test
(aiosmtpd on 127.0.0.1): plain, STARTTLS with AUTH against a CA of the test's own (trustme),
implicit TLS, 4xx retried, 5xx failed for good, a digest by mail, and `render` showing the
message as it would be mailed."""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from email.message import Message
from pathlib import Path
from typing import Callable

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from cpex_webhook_notification import Notifier

SCRIPT = shutil.which("webhook-notification", path=str(Path(sys.executable).parent))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """Records each message the server accepted; `reply(n)` answers attempt n's DATA."""

    def __init__(self, reply: Callable[[int], str]):
        self.reply = reply
        self.attempts = 0
        self.messages: list[tuple[list[str], Message]] = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        with self.cond:
            answer = self.reply(self.attempts)
            self.attempts += 1
            if answer.startswith("250"):
                self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content, policy=email.policy.default)))
            self.cond.notify_all()
        return answer

    def wait_for(self, n: int, timeout: float = 15.0) -> list[tuple[list[str], Message]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.messages) >= n, timeout), f"{len(self.messages)} of {n} messages"
            return list(self.messages)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"ops", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def pki(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server, str(ca_file)


def smtp_server(reply=lambda n: "250 OK", **options):
    mailbox = Mailbox(reply)
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    return controller, mailbox


def mail_config(url: str, **webhook) -> dict:
    return {"webhooks": [{"url": url, "events": ["tool_error", "rate_limit_exceeded"], "retry_schedule": ["50ms"],
                          "email": {"from": "Gateway <gateway@example.com>", "to": ["ops@example.com", "sec@example.com"],
                                    "cc": ["audit@example.com"],
                                    "subject": "[{{severity}}] {{event}} on {{metadata.tool_name}}"}, **webhook}]}


FAILED = {"name": "search", "result": {"isError": True, "content": [{"type": "text", "text": "backend down"}]}}


def test_a_plain_smtp_server_gets_the_message_with_its_envelope_and_subject():
    controller, mailbox = smtp_server()
    try:
        n = Notifier(mail_config(f"smtp://127.0.0.1:{controller.port}"), "gw")
        assert n.invoke("tool_post_invoke", FAILED, {"request_id": "r-1", "user": "alice <b>\"x\""}) == "tool_error"
        assert n.flush(15)
        [(rcpt, message)] = mailbox.wait_for(1)
        assert sorted(rcpt) == ["audit@example.com", "ops@example.com", "sec@example.com"]
        assert message["From"] == "Gateway <gateway@example.com>"
        assert message["Subject"] == "[error] tool_error on search"
        assert message["Message-ID"].endswith("@webhook-notification>")
        text = message.get_payload(decode=True).decode()
        assert "error tool_error ×1 — search" in text and "backend down" in text and "Request: r-1" in text
        assert 'alice <b>"x"' in text, "host strings reach a plain-text mail as they are"
        stats = n.stats()["webhooks"][0]
        assert (stats["delivered"], stats["last_status"]) == (1, 250)
        n.close()
    finally:
        controller.stop()


def test_starttls_and_auth_with_the_webhooks_ca(pki):
    context, ca_file = pki
    controller, mailbox = smtp_server(tls_context=context, require_starttls=True, authenticator=authenticator,
                                      auth_require_tls=True)
    try:
        url = f"smtp://127.0.0.1:{controller.port}"
        config = mail_config(url, tls={"ca_file": ca_file})
        config["webhooks"][0]["email"] |= {"username": "ops", "password": "s3cret"}
        n = Notifier(config, "gw")
        n.notify("rate_limit_exceeded", {"user": "alice"}, {"code": "RATE_LIMIT", "reason": "too many"})
        assert n.flush(15)
        [(_, message)] = mailbox.wait_for(1)
        assert message["Subject"].startswith("[warning] rate_limit_exceeded")
        assert n.stats()["webhooks"][0]["delivered"] == 1
        n.close()

        # A wrong password: 535 is permanent, the delivery a dead letter; the password
        # appears nowhere.
        config["webhooks"][0]["email"]["password"] = "wrong-password"
        n = Notifier(config, "gw")
        n.notify("rate_limit_exceeded", {"user": "alice"}, {"code": "RATE_LIMIT", "reason": "too many"})
        assert n.flush(15)
        [letter] = n.dead_letters()
        assert letter["last_status"] == 535 and "wrong-password" not in str(letter) + str(n.stats())
        n.close()
    finally:
        controller.stop()


def test_implicit_tls_with_smtps(pki):
    context, ca_file = pki
    mailbox = Mailbox(lambda n: "250 OK")
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, ssl_context=context)
    controller.start()
    try:
        n = Notifier(mail_config(f"smtps://127.0.0.1:{port}", tls={"ca_file": ca_file}), "gw")
        n.invoke("tool_post_invoke", FAILED, {"request_id": "r-2"})
        assert n.flush(15)
        assert len(mailbox.wait_for(1)) == 1
        n.close()
    finally:
        controller.stop()


def test_4xx_is_retried_with_the_same_message_and_5xx_fails():
    controller, mailbox = smtp_server(lambda n: "451 4.3.0 try again later" if n == 0 else "250 OK")
    try:
        n = Notifier(mail_config(f"smtp://127.0.0.1:{controller.port}"), "gw")
        n.invoke("tool_post_invoke", FAILED, {"request_id": "r-3"})
        assert n.flush(15)
        assert len(mailbox.wait_for(1)) == 1
        stats = n.stats()["webhooks"][0]
        assert (stats["delivered"], stats["retries"], mailbox.attempts) == (1, 1, 2)
        n.close()
    finally:
        controller.stop()
    controller, mailbox = smtp_server(lambda n: "550 5.1.1 no such user")
    try:
        n = Notifier(mail_config(f"smtp://127.0.0.1:{controller.port}"), "gw")
        n.invoke("tool_post_invoke", FAILED, {"request_id": "r-4"})
        assert n.flush(15)
        stats = n.stats()["webhooks"][0]
        assert (stats["failed"], stats["retries"], mailbox.attempts, stats["last_status"]) == (1, 0, 1, 550)
        assert n.dead_letters()[0]["body"]["subject"] == "[error] tool_error on search"
        n.close()
    finally:
        controller.stop()


def test_a_digest_by_mail_counts_its_events_and_shows_samples():
    controller, mailbox = smtp_server()
    try:
        config = mail_config(f"smtp://127.0.0.1:{controller.port}", digest={"group_by": ["tool"], "group_interval": "1h", "samples": 2})
        del config["webhooks"][0]["email"]["subject"]
        n = Notifier(config, "gw")
        for i in range(5):
            n.invoke("tool_post_invoke", FAILED, {"request_id": f"r-{i}"})
        n.close()  # the group's first message went at once; close sends the rest
        messages = mailbox.wait_for(2)
        last = messages[-1][1]
        text = last.get_payload(decode=True).decode()
        assert last["Subject"].startswith("error tool_error ×4"), last["Subject"]
        assert "Count: 4" in text and "First 2 events of the group:" in text
    finally:
        controller.stop()


def test_render_shows_the_message_as_it_would_be_mailed(tmp_path):
    config = tmp_path / "mail.yaml"
    config.write_text(
        "webhooks:\n  - url: smtp://mail.example.com:587\n    events: [tool_error]\n"
        "    email: {from: gw@example.com, to: [ops@example.com], username: ops, password: hunter22,"
        " subject: 'Tool {{metadata.tool_name}} failed'}\n")
    assert SCRIPT
    done = subprocess.run([SCRIPT, "render", str(config), "--event", "tool_error", "--metadata", '{"tool_name": "search"}'],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Subject: Tool search failed" in done.stdout and "ops@example.com" in done.stdout
    assert "hunter22" not in done.stdout + done.stderr
    checked = subprocess.run([SCRIPT, "check", str(config)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
