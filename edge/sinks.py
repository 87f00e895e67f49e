"""InfluxSink: one write of a batch of line protocol to an InfluxDB endpoint, classified.

A sink makes one attempt and says what happened; the Forwarder owns the policy
(retries, backoff, splitting, dead letters). Outcomes:
- ok
- retry: 5xx, timeout, refused or reset connection; with `after_s` from Retry-After on
  429/503
- too_large: 413, the forwarder splits the batch
- rejected: any other 4xx, the lines (or some of them) can never be written

Two APIs:
- `api = "v1"` (InfluxV1Sink): a small hand-written HTTP POST to `/write?db=&precision=ms`.
  InfluxDB 1.x (1.6 here) has no `/api/v2/write` (only 1.8+ adds it), so influxdb-client,
  which speaks only the v2 API for writes, cannot talk to it; InfluxDB 3.x serves this
  path as its v1 compatibility API. The database is created when missing (`CREATE
  DATABASE` is idempotent), so a fresh server just works.
- `api = "v2"` (InfluxV2Sink): `/api/v2/write` through influxdb-client's write API in
  synchronous mode with its retries off, so the forwarder alone decides about retrying.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import logging
import time
import urllib.parse
from base64 import b64encode
from dataclasses import dataclass

from edge.config import SinkConfig

log = logging.getLogger("urbansense.edge.sinks")

OK = "ok"
RETRY = "retry"
TOO_LARGE = "too_large"
REJECTED = "rejected"


@dataclass(frozen=True)
class WriteOutcome:
    kind: str
    status: int | None = None
    detail: str = ""
    after_s: float | None = None  # Retry-After, when the server sent one


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(status: int, body: str, headers_retry_after: str | None) -> WriteOutcome:
    if 200 <= status < 300:
        return WriteOutcome(OK, status)
    if status == 413:
        return WriteOutcome(TOO_LARGE, status, body)
    if status in (429, 503):
        return WriteOutcome(RETRY, status, body, retry_after(headers_retry_after))
    if status in (408,) or status >= 500:
        return WriteOutcome(RETRY, status, body)
    if status in (401, 403, 404):
        # Credentials, a missing database or bucket: the server or its config is wrong,
        # not the lines. Keep them and retry; the logs and metrics show the failure.
        return WriteOutcome(RETRY, status, body)
    return WriteOutcome(REJECTED, status, body)


class InfluxV1Sink:
    """POST /write?db=...&precision=ms with a gzip body over one kept-alive connection."""

    def __init__(self, cfg: SinkConfig) -> None:
        self.cfg = cfg
        url = urllib.parse.urlsplit(cfg.url)
        self.https = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/")
        query = {"db": cfg.database, "precision": "ms"}
        self.write_path = f"{self.prefix}/write?{urllib.parse.urlencode(query)}"
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        if cfg.gzip:
            self.headers["Content-Encoding"] = "gzip"
        if cfg.username is not None:
            token = b64encode(f"{cfg.username}:{cfg.password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self._conn: http.client.HTTPConnection | None = None
        self.database_ready = False

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.cfg.timeout_s)
        return self._conn

    def _request(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, str, str | None]:
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            return resp.status, text, resp.getheader("Retry-After")
        except BaseException:
            self.close()
            raise

    def ensure_database(self) -> bool:
        if not self.cfg.create_database:
            return True
        q = urllib.parse.urlencode({"q": f'CREATE DATABASE "{self.cfg.database}"'})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if "Authorization" in self.headers:
            headers["Authorization"] = self.headers["Authorization"]
        try:
            status, text, _ = self._request("POST", f"{self.prefix}/query", q.encode(), headers)
        except (OSError, http.client.HTTPException) as err:
            log.debug("sink %s: cannot create database yet: %s", self.cfg.name, err)
            return False
        self.database_ready = 200 <= status < 300
        if not self.database_ready:
            log.warning("sink %s: CREATE DATABASE answered %s: %s", self.cfg.name, status, text[:200])
        return self.database_ready

    def write(self, body: str) -> WriteOutcome:
        if not self.database_ready:
            self.ensure_database()
        data = body.encode("utf-8")
        if self.cfg.gzip:
            data = gzip.compress(data, compresslevel=1)
        for _ in range(2):
            try:
                status, text, after = self._request("POST", self.write_path, data, self.headers)
            except (TimeoutError, OSError, http.client.HTTPException) as err:
                return WriteOutcome(RETRY, None, f"{type(err).__name__}: {err}")
            if status == 404 and "database not found" in text and self.cfg.create_database:
                # Dropped or never created (a fresh server): create it, then try once more.
                self.database_ready = False
                if self.ensure_database():
                    continue
            break
        return classify(status, text, after)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class InfluxV2Sink:
    """/api/v2/write through influxdb-client (InfluxDB 2.x, 3.x, Cloud, 1.8+)."""

    def __init__(self, cfg: SinkConfig) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.cfg = cfg
        # retries=False: urllib3 must not retry behind the forwarder's back.
        self.client = InfluxDBClient(
            url=cfg.url,
            token=cfg.token or "",
            org=cfg.org,
            timeout=int(cfg.timeout_s * 1000),
            enable_gzip=cfg.gzip,
            retries=False,
        )
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    def ensure_database(self) -> bool:
        return True

    def write(self, body: str) -> WriteOutcome:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self.api.write(
                bucket=self.cfg.bucket, org=self.cfg.org, record=body, write_precision=WritePrecision.MS
            )
            return WriteOutcome(OK, 204)
        except ApiException as err:
            headers = err.headers or {}
            after = headers.get("Retry-After") if hasattr(headers, "get") else None
            text = err.body.decode("utf-8", "replace") if isinstance(err.body, bytes) else str(err.body or "")
            return classify(err.status or 0, text, after)
        except Exception as err:  # urllib3 connection errors, timeouts
            return WriteOutcome(RETRY, None, f"{type(err).__name__}: {err}")

    def close(self) -> None:
        try:
            self.api.close()
        finally:
            self.client.close()


def make_sink(cfg: SinkConfig):
    return InfluxV1Sink(cfg) if cfg.api == "v1" else InfluxV2Sink(cfg)
