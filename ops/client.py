"""A small client for the InfluxDB v1 `/query` API (InfluxQL).

Why not influxdb-client: that library speaks the v2 API (Flux queries on `/api/v2/query`)
and has no InfluxQL query call, while the operations queries are InfluxQL, which InfluxDB
1.x, 2.x (through a DBRP mapping) and 3.x all answer on `/query`. The v1 client package
(`influxdb`) is no longer maintained. The endpoint is one form-encoded POST returning JSON,
so the standard library carries it.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


class QueryError(RuntimeError):
    """The database could not be reached or refused a query; the message is one line."""


@dataclass(frozen=True)
class Series:
    """One series of an InfluxQL answer: a measurement, its GROUP BY tags and rows."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts, with the series' tags merged in."""
        return [{**self.tags, **dict(zip(self.columns, row))} for row in self.values]


@dataclass(frozen=True)
class InfluxQLClient:
    """InfluxQL over HTTP. `token` is sent as `Authorization: Token ...` (InfluxDB 2.x/3.x);
    `username`/`password` as HTTP Basic credentials (InfluxDB 1.x with auth enabled)."""

    url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    def query(self, influxql: str, db: str | None = None) -> list[list[Series]]:
        """Run one or more `;`-separated statements; return the series of each statement.
        Times come back as milliseconds since the epoch."""
        params = {"q": influxql, "epoch": "ms"}
        if db:
            params["db"] = db
        body = self._post("/query", params)
        results = body.get("results", [])
        out: list[list[Series]] = []
        for result in results:
            if "error" in result:
                if result["error"] == "not executed" and db and not self._has_database(db):
                    # InfluxDB 1.x answers a several-statement query on a missing database
                    # with only "not executed"; name the real cause.
                    raise QueryError(f"InfluxQL error: database not found: {db}")
                raise QueryError(f"InfluxQL error: {result['error']}")
            out.append(
                [
                    Series(s.get("name", ""), s.get("tags") or {}, s.get("columns", []), s.get("values", []))
                    for s in result.get("series", [])
                ]
            )
        return out

    def _has_database(self, db: str) -> bool:
        return any(row and row[0] == db for s in self.one("SHOW DATABASES") for row in s.values)

    def one(self, influxql: str, db: str | None = None) -> list[Series]:
        """Series of a single statement."""
        results = self.query(influxql, db)
        return results[0] if results else []

    def _post(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        data = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        elif self.username is not None:
            # InfluxDB 1.x reads u/p only from the URL, where they would land in access logs;
            # it also takes HTTP Basic credentials, which stay in a header.
            pair = f"{self.username}:{self.password or ''}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as err:
            raise QueryError(f"{self.url}: HTTP {err.code}: {_error_text(err)}") from None
        except urllib.error.URLError as err:
            raise QueryError(f"cannot reach {self.url}: {err.reason}") from None
        except TimeoutError:
            raise QueryError(f"{self.url}: no answer within {self.timeout:g} s") from None
        except (ValueError, json.JSONDecodeError):
            raise QueryError(
                f"{self.url}: the answer is not InfluxDB JSON (is this an InfluxDB /query endpoint?)"
            ) from None


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        raw = err.read().decode(errors="replace")
    except OSError:
        return err.reason
    try:
        body = json.loads(raw)
        return str(body.get("error") or body.get("message") or raw).strip()
    except ValueError:
        return raw.strip().splitlines()[0] if raw.strip() else str(err.reason)


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
