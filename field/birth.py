"""Watch the broker for a node's birth message (protocols/SPEC.md §6.1).

The watcher subscribes before the node is reset and accepts only a message published while
it listens: the broker hands a new subscriber the retained birth of an earlier run with the
retain flag set, and that one proves nothing about the node just flashed."""

from __future__ import annotations

import json
import ssl
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from field.node_config import BrokerConfig


class BrokerError(Exception):
    """The laptop cannot watch the broker (one line: refused, unreachable, credentials)."""


class BirthWatcher:
    def __init__(
        self,
        broker: BrokerConfig,
        topic: str,
        node: str,
        host: str | None = None,
        port: int | None = None,
        retained: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        """retained=False: wait for a new birth; True: read the status the broker kept
        (the node's last birth or last will), which is what `node info` shows. The laptop
        logs in as the node unless `username` is given: a production ACL lets a node write
        its status but not read it, so there the technician watches with a reading account."""
        self.retained = retained
        self.broker = broker
        self.host = host or broker.host
        self.port = port or broker.effective_port
        self.topic = topic
        self.node = node
        self.birth: dict | None = None
        self._born = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._refusal: str | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"urbansense-provision-{uuid.uuid4().hex[:12]}",
            clean_session=True,
        )
        if username:
            self.client.username_pw_set(username, password)
        elif broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:  # broker.ca is the CA's PEM file on this laptop (node_config.py)
            try:
                self.client.tls_set(ca_certs=broker.ca if broker.ca else None, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError) as err:
                raise BrokerError(f"broker.ca {broker.ca}: cannot load the CA: {err}") from None
        self._who = (
            "--watch-user and URBANSENSE_WATCH_PASSWORD"
            if username
            else "broker.username and broker.password"
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except ConnectionRefusedError:
            raise BrokerError(
                f"broker {self.address} refused the connection (nothing listens there: is Mosquitto running?)"
            ) from None
        except (OSError, ssl.SSLError) as err:
            raise BrokerError(f"broker {self.address} unreachable: {err}") from None
        self.client.loop_start()
        if not self._connected.wait(timeout) or self._refusal:
            self.stop()
            raise BrokerError(self._refusal or f"broker {self.address} did not answer within {timeout:g} s")
        self.client.subscribe(self.topic, qos=1)
        if not self._subscribed.wait(timeout):
            self.stop()
            raise BrokerError(f"broker {self.address} did not confirm the subscription to {self.topic}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            text = str(reason_code)
            if reason_code.value in (4, 5, 134, 135):  # bad user name or password / not authorised
                self._refusal = f"broker {self.address} refused the credentials ({text}): check {self._who}"
            else:
                self._refusal = f"broker {self.address} refused the connection: {text}"
        self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subscribed.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if msg.retain != self.retained:
            return  # watching for a new birth: an earlier run's status proves nothing
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(payload, dict) or payload.get("node") != self.node:
            return
        if self.retained or payload.get("state") == "online":
            self.birth = payload
            self._born.set()

    def wait(self, timeout: float) -> dict | None:
        return self.birth if self._born.wait(timeout) else None

    @property
    def born(self) -> bool:
        return self._born.is_set()

    def stop(self) -> None:
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except Exception:  # already gone: nothing left to close
            pass
