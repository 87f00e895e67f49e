"""Credentials reach InfluxDB 1.x with authentication on: HTTP Basic from --username and
--password; a missing or wrong one is a one-line error."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

from cli.main import main
from hil.services import InfluxDBServer


class AuthInfluxDB(InfluxDBServer):
    """InfluxDB 1.6 with `auth-enabled`: every request needs a user."""

    def prepare(self) -> None:
        super().prepare()
        text = self.config_path.read_text()
        self.config_path.write_text(text.replace("[http]\n", "[http]\n  auth-enabled = true\n", 1))


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    server = AuthInfluxDB(tmp_path_factory.mktemp("influxdb-auth"))
    server.start()
    # With no user yet, InfluxDB accepts the statement that creates the first admin.
    body = urllib.parse.urlencode(
        {"q": "CREATE USER ops WITH PASSWORD 's3cret' WITH ALL PRIVILEGES"}
    ).encode()
    urllib.request.urlopen(f"{server.url}/query", data=body, timeout=10).close()
    yield server
    server.stop()


def test_basic_credentials_are_accepted(capsys, secured):
    code = main(
        [
            "query",
            "influxql",
            "--url",
            secured.url,
            "--username",
            "ops",
            "--password",
            "s3cret",
            "--json",
            "SHOW USERS",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [r["user"] for r in json.loads(out)["result"]] == ["ops"]


@pytest.mark.parametrize(
    "credentials", [[], ["--username", "ops", "--password", "wrong"]], ids=["none", "wrong-password"]
)
def test_missing_or_wrong_credentials_are_one_line(capsys, secured, credentials, monkeypatch):
    monkeypatch.delenv("INFLUX_USERNAME", raising=False)
    code = main(["query", "alarms", "--url", secured.url, "--db", "city", *credentials])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.startswith(f"urbansense: {secured.url}: HTTP 401") and err.count("\n") == 1, err
