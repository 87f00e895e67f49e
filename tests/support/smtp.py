"""A real SMTP server for Alertmanager's email receiver: aiosmtpd's Controller on a free
loopback port, keeping every message it accepts. With `refuse` set it answers every
RCPT TO with 550, as a mail server that will not take the mail does."""

from __future__ import annotations

import email
import threading
from dataclasses import dataclass
from email.message import Message

from aiosmtpd.controller import Controller

from hil.services import free_port


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: list[str]
    message: Message

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def text(self) -> str:
        parts = self.message.walk() if self.message.is_multipart() else [self.message]
        return "\n".join(
            p.get_payload(decode=True).decode("utf-8", "replace")
            for p in parts
            if p.get_content_maintype() == "text"
        )


class SmtpServer:
    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.refused = 0
        self.refuse = False
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- aiosmtpd's handler hooks
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.refuse:
            with self._lock:
                self.refused += 1
            return "550 5.7.1 relaying refused"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        mail = Mail(envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(envelope.content))
        with self._lock:
            self.mails.append(mail)
        return "250 Message accepted for delivery"

    # -- lifecycle
    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def received(self) -> list[Mail]:
        with self._lock:
            return list(self.mails)
