"""Who may do what on a site's broker: per-node passwords and topic ACLs for Mosquitto.

The source of truth is a small JSON registry (`access.json`) listing each account and its
scope. From it this module renders Mosquitto's ACL file; passwords go into Mosquitto's
password file through `mosquitto_passwd` (the broker's own hashing, never reimplemented).
A node may publish only under its own node id and read only its own `cmd` and `receipt`
topics; an edge account reads its whole zone and writes only its zone's `alarms/...`,
`cmd` and `receipt` topics (so only the site's edge tells a node what is committed).

After a change the broker must reload (SIGHUP): `reload_broker()`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

from protocols.topics import ALARM_ROOT, EDGE_CHANNELS, NODE_CHANNELS, ROOT, VERSION, check_slug


class AccessError(RuntimeError):
    """A credentials operation failed; the message says which account and why."""


def _mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if not found:
        raise AccessError("mosquitto_passwd not found (Debian package mosquitto)")
    return found


def new_password() -> str:
    # 24 random bytes, URL-safe: fits any config file and any MQTT client.
    return secrets.token_urlsafe(24)


def new_shared_group() -> str:
    """A name for the edge workers' shared subscription that no one can guess.

    Mosquitto's ACL file cannot refuse a subscription, only what it delivers: a node that
    joined the edges' `$share/<group>/...` would be handed its turn of the zone's
    messages, which the broker then drops for it. So the group name is a secret of the
    edge's config, like its password (a slug: 2 letters and 24 hex digits)."""
    return "g-" + secrets.token_hex(12)


def node_acl(district: str, zone: str, node: str) -> list[str]:
    base = f"{ROOT}/v{VERSION}/{district}/{zone}/{node}"
    lines = [f"topic write {base}/{channel}" for channel in NODE_CHANNELS]
    lines += [f"topic read {base}/{channel}" for channel in EDGE_CHANNELS]  # cmd, receipt
    return lines


def edge_acl(district: str, zone: str) -> list[str]:
    zone_base = f"{ROOT}/v{VERSION}/{district}/{zone}"
    return [
        f"topic read {zone_base}/#",
        *(f"topic write {zone_base}/+/{channel}" for channel in EDGE_CHANNELS),  # cmd, receipt
        f"topic readwrite {ALARM_ROOT}/v{VERSION}/{district}/{zone}/#",
    ]


class BrokerAccess:
    """Accounts of one broker: `folder/access.json`, `folder/passwd`, `folder/acl`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.registry_path = self.folder / "access.json"
        self.passwd_path = self.folder / "passwd"
        self.acl_path = self.folder / "acl"

    # -- registry
    def accounts(self) -> dict[str, dict]:
        if not self.registry_path.exists():
            return {}
        return json.loads(self.registry_path.read_text())

    def _save(self, accounts: dict[str, dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.registry_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(accounts, indent=2, sort_keys=True))
        os.replace(tmp, self.registry_path)
        self._render_acl(accounts)

    def _render_acl(self, accounts: dict[str, dict]) -> None:
        lines = ["# Generated from access.json by urbansense; edit with `urbansense creds`.", ""]
        for user in sorted(accounts):
            acc = accounts[user]
            lines.append(f"user {user}")
            if acc["role"] == "node":
                lines += node_acl(acc["district"], acc["zone"], user)
            else:
                lines += edge_acl(acc["district"], acc["zone"])
            lines.append("")
        tmp = self.acl_path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines))
        os.replace(tmp, self.acl_path)

    # -- password file
    def _set_password(self, user: str, password: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [_mosquitto_passwd(), "-b", str(self.passwd_path), user, password]
        if not self.passwd_path.exists():
            args.insert(1, "-c")
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AccessError(
                f"mosquitto_passwd failed for {user}: {proc.stderr.strip() or proc.stdout.strip()}"
            )
        self.passwd_path.chmod(0o600)

    def _delete_password(self, user: str) -> None:
        if not self.passwd_path.exists():
            return
        proc = subprocess.run(
            [_mosquitto_passwd(), "-D", str(self.passwd_path), user], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise AccessError(f"mosquitto_passwd could not remove {user}: {proc.stderr.strip()}")

    # -- operations
    def add(self, user: str, role: str, district: str, zone: str, password: str | None = None) -> str:
        """Create or replace an account; returns its password (generated if not given)."""
        if role not in ("node", "edge"):
            raise AccessError(f"role must be node or edge, not {role!r}")
        for what, value in (("district", district), ("zone", zone)):
            check_slug(value, what)
        if role == "node":
            check_slug(user, "node")
        password = password or new_password()
        self._set_password(user, password)
        accounts = self.accounts()
        accounts[user] = {"role": role, "district": district, "zone": zone}
        self._save(accounts)
        return password

    def rotate(self, user: str) -> str:
        """A new password for an existing account; the old one stops working at reload."""
        if user not in self.accounts():
            raise AccessError(f"no account {user!r}")
        password = new_password()
        self._set_password(user, password)
        return password

    def revoke(self, user: str) -> None:
        accounts = self.accounts()
        if user not in accounts:
            raise AccessError(f"no account {user!r}")
        self._delete_password(user)
        del accounts[user]
        self._save(accounts)


def reload_broker(pid: int) -> None:
    """Mosquitto rereads its password and ACL files on SIGHUP."""
    os.kill(pid, signal.SIGHUP)
