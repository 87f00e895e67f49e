"""Flashing onto a production-like site: TLS with the site's CA, no anonymous access, a
password per node and topic ACLs (field/access.py). The CA file goes onto the board with the
bundle; the laptop watches with a reading account, since a node may not read its status."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from field.access import BrokerAccess
from field.node_config import CA_ON_DEVICE
from field.pki import CertificateAuthority
from hil.services import BrokerTLS
from tests.support.cli import urbansense

D, Z = "xuhui", "caohejing"
EDGE = "edge-xuhui-caohejing"


@pytest.fixture
def site(tmp_path, mosquitto_factory):
    ca = CertificateAuthority.create(tmp_path / "pki")
    server = ca.issue("broker", tmp_path / "pki", server_names=["127.0.0.1", "localhost"])
    access = BrokerAccess(tmp_path / "access")
    passwords = {"p-0501": access.add("p-0501", "node", D, Z), EDGE: access.add(EDGE, "edge", D, Z)}
    broker = mosquitto_factory(
        anonymous=False,
        tls=BrokerTLS(ca.files.cert, server.cert, server.key),
        password_file=access.passwd_path,
        acl_file=access.acl_path,
    )
    return broker, ca.files.cert, passwords


def tls_node_config(folder: Path, port: int, ca_file: Path, password: str) -> Path:
    """p-0501's config for the TLS site (broker.ca: the CA's PEM file on this laptop)."""
    config = folder / "p-0501.json"
    config.write_text(
        json.dumps(
            {
                "node": "p-0501",
                "district": D,
                "zone": Z,
                "kind": "parking",
                "platform": "sim",
                "interval_s": 2,
                "broker": {
                    "host": "127.0.0.1",
                    "port": port,
                    "username": "p-0501",
                    "password": password,
                    "tls": True,
                    "ca": str(ca_file),
                },
            }
        )
    )
    return config


def test_flash_onto_a_tls_site_with_a_reading_account(boards, tmp_path, site, firmware_bundle):
    broker, ca_file, passwords = site
    bundle = firmware_bundle
    board = boards()
    config = tls_node_config(tmp_path, broker.port, ca_file, passwords["p-0501"])
    flash = [
        "node",
        "flash",
        "--port",
        board.port,
        "--node",
        str(config),
        "--bundle",
        str(bundle),
        "--timeout",
        "30",
    ]

    # The node's own account may write its status but not read it: the watch needs another.
    no_user = urbansense(*flash[:-2], "--timeout", "1", "--watch-user", EDGE)
    assert no_user.returncode == 1
    assert "URBANSENSE_WATCH_PASSWORD" in no_user.stderr

    proc = urbansense(
        *flash, "--watch-user", EDGE, "--json", env={"URBANSENSE_WATCH_PASSWORD": passwords[EDGE]}
    )
    assert proc.returncode == 0, proc.stderr
    node = json.loads(proc.stdout)["nodes"][0]
    assert node["status"] == "live", node
    assert (board.flash / CA_ON_DEVICE).read_bytes() == ssl.PEM_cert_to_DER_cert(ca_file.read_text())
    on_board = json.loads((board.flash / "config.json").read_text())
    assert on_board["broker"]["ca"] == CA_ON_DEVICE and on_board["broker"]["tls"] is True

    info = urbansense(
        "node",
        "info",
        "--port",
        board.port,
        "--node",
        str(config),
        "--watch-user",
        EDGE,
        "--json",
        env={"URBANSENSE_WATCH_PASSWORD": passwords[EDGE]},
    )
    assert info.returncode == 0, info.stderr
    got = json.loads(info.stdout)
    assert got["broker_status"] == "online" and got["reset_cause"] == "power"
    assert got["config"]["broker"]["password"] == "********"
    for secret in passwords.values():
        for text in (proc.stdout, proc.stderr, info.stdout, info.stderr, board.console()):
            assert secret not in text


def test_missing_ca_file_is_named_before_the_board_is_touched(boards, tmp_path):
    board = boards()
    config = tmp_path / "p-0502.json"
    config.write_text(
        json.dumps(
            {
                "node": "p-0502",
                "district": D,
                "zone": Z,
                "kind": "parking",
                "platform": "sim",
                "broker": {"host": "127.0.0.1", "port": 8883, "tls": True, "ca": str(tmp_path / "nope.pem")},
            }
        )
    )
    proc = urbansense("node", "flash", "--port", board.port, "--node", str(config), "--no-wait")
    assert proc.returncode == 1
    assert "broker.ca: " in proc.stderr and "nope.pem" in proc.stderr
    assert not (board.flash / "config.json").exists()


def test_node_with_a_wrong_password_is_told_apart(boards, tmp_path, site, firmware_bundle):
    broker, ca_file, passwords = site
    bundle = firmware_bundle
    board = boards()
    config = tls_node_config(tmp_path, broker.port, ca_file, "not-the-password")
    proc = urbansense(
        "node",
        "flash",
        "--port",
        board.port,
        "--node",
        str(config),
        "--bundle",
        str(bundle),
        "--timeout",
        "5",
        "--watch-user",
        EDGE,
        env={"URBANSENSE_WATCH_PASSWORD": passwords[EDGE]},
    )
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line == (
        "urbansense: p-0501 is NOT live: the broker refused the node's credentials "
        "(check broker.username and broker.password)"
    ), line


def test_flash_gives_the_node_its_own_credential(boards, tmp_path, site, firmware_bundle):
    """--access-dir: provisioning makes the node's broker account and password, writes the
    password into the config on the board only, and has the broker reload; the node logs in
    with it and is live."""
    broker, ca_file, passwords = site
    access_dir = tmp_path / "access"  # the site's accounts (fixture's folder)
    config = tmp_path / "p-0601.json"
    laptop_text = json.dumps(
        {
            "node": "p-0601",
            "district": D,
            "zone": Z,
            "kind": "leak",
            "platform": "sim",
            "interval_s": 2,
            "broker": {"host": "127.0.0.1", "port": broker.port, "tls": True, "ca": str(ca_file)},
        }
    )
    config.write_text(laptop_text)
    board = boards()
    proc = urbansense(
        "node",
        "flash",
        "--port",
        board.port,
        "--node",
        str(config),
        "--bundle",
        str(firmware_bundle),
        "--timeout",
        "30",
        "--access-dir",
        str(access_dir),
        "--broker-pid",
        str(broker.process.pid),
        "--watch-user",
        EDGE,
        "--json",
        env={"URBANSENSE_WATCH_PASSWORD": passwords[EDGE]},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["nodes"][0]["status"] == "live"
    on_board = json.loads((board.flash / "config.json").read_text())["broker"]
    assert on_board["username"] == "p-0601" and len(on_board["password"]) >= 24
    assert on_board["password"] not in proc.stdout + proc.stderr
    assert config.read_text() == laptop_text  # the laptop's file holds no secret
    assert BrokerAccess(access_dir).accounts()["p-0601"] == {"role": "node", "district": D, "zone": Z}
    assert "topic write city/v1/xuhui/caohejing/p-0601/telemetry" in (access_dir / "acl").read_text()


def test_bad_access_dir_is_one_line(tmp_path, site, boards):
    broker, ca_file, _ = site
    config = tmp_path / "p-0602.json"
    config.write_text(
        json.dumps(
            {
                "node": "p-0602",
                "district": D,
                "zone": Z,
                "kind": "leak",
                "platform": "sim",
                "broker": {"host": "127.0.0.1", "port": broker.port},
            }
        )
    )
    board = boards()
    proc = urbansense(
        "node",
        "flash",
        "--port",
        board.port,
        "--node",
        str(config),
        "--access-dir",
        str(tmp_path / "access"),
        "--broker-pid",
        "999999",
        "--no-wait",
    )
    assert proc.returncode == 1 and "--broker-pid 999999: no such process" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "p-0602" not in BrokerAccess(tmp_path / "access").accounts()  # nothing half-made
