"""deploy/README.md's gateway steps, run as written on this Debian machine, in a temporary
root: a private mount namespace (`unshare`) lays a temporary layer over /etc,
/opt, /usr/local, /var/lib, /var/log and /run, so the user, the software, the config and
the unit land there and the machine itself is left as it was.

Every command of the section runs, in order, from a copy of the checkout, except
`apt-get` (the machine's package manager: the test checks instead that each package is
installed) and `systemctl` (no systemd runs as PID 1 here). Then what systemd would do is
checked by hand: the unit passes `systemd-analyze verify` (a README step), the edge's user
reads its config (`check-config` as that user, a README step), Mosquitto's user reads the
broker's files, and Mosquitto starts on the installed configuration and takes the edge's
account."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

SECTION = "## An X-level gateway (Debian 12, systemd)"
LAYERED = ("/etc", "/opt", "/usr/local", "/var/lib", "/var/log", "/run")
NOT_HERE = ("apt-get ", "systemctl ")  # the machine's package manager; systemd as PID 1

# What the operator does by hand between the README's blocks (step 3: "Edit ...").
EDIT = r"""
secret=$(cat /etc/urbansense/edge.secret)
sed -i -e 's|^# username = .*|username = "edge-xuhui-caohejing"|' \
       -e "s|^# password = .*|password = \"$secret\"|" \
       -e 's|REPLACE-ME|a-token-the-city-gave|' /etc/urbansense/edge.toml
"""

# What systemd and Mosquitto would find, checked as their users.
AFTER = r"""
getent passwd urbansense
test "$(stat -c '%U:%G %a' /etc/urbansense/edge.toml)" = "root:urbansense 640"
! runuser -u nobody -- cat /etc/urbansense/edge.toml > /dev/null 2>&1
for f in passwd acl pki/ca.pem pki/broker.pem pki/broker.key; do
  runuser -u mosquitto -- test -r /etc/mosquitto/urbansense/$f
done
"""

# Mosquitto on the installed configuration, in a network namespace of its own (its ports
# are free there whatever runs on this machine): it starts, and takes the edge's account.
BROKER = r"""
set -euo pipefail
ip link set lo up
# What Debian's mosquitto.service does before it starts the broker (`systemctl restart`):
install -d -o mosquitto -m 0740 /run/mosquitto
mosquitto -c /etc/mosquitto/mosquitto.conf -d
for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.1; done
secret=$(cat /etc/urbansense/edge.secret)
mosquitto_pub -h 127.0.0.1 -p 1883 -u edge-xuhui-caohejing -P "$secret" -q 1 \
    -t alarms/v1/xuhui/caohejing/l-0001/leak -m '{}'
! mosquitto_pub -h 127.0.0.1 -p 1883 -u edge-xuhui-caohejing -P wrong -q 1 -t alarms/v1/xuhui/caohejing/x -m '{}'
kill "$(cat /run/mosquitto/mosquitto.pid)"
echo "all steps done"
"""


def gateway_blocks(readme: Path) -> list[str]:
    text = readme.read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def runnable(block: str) -> tuple[str, list[str]]:
    """The block without the commands that cannot run here, and the packages apt-get asks for."""
    kept, packages = [], []
    for line in block.splitlines():
        if line.startswith("apt-get "):
            packages += [w for w in shlex.split(line)[2:] if not w.startswith("-")]
        elif not line.startswith(NOT_HERE):
            kept.append(line)
    return "\n".join(kept), packages


def can_layer() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--net", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gateway_steps_work_as_written(repo_root, tmp_path):
    if not can_layer():
        pytest.skip("needs root and mount/network namespaces (unshare) to lay a temporary root")
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze (Debian package systemd) is not installed: the unit cannot be verified")
    blocks = gateway_blocks(repo_root / "deploy" / "README.md")
    assert len(blocks) == 4, blocks  # packages and software; broker; config; check and unit
    steps, packages = [], []
    for block in blocks:
        script, wanted = runnable(block)
        steps.append(script)
        packages += wanted
    assert {"mosquitto", "mosquitto-clients", "python3-venv"} <= set(packages)
    for package in packages:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
        assert status.stdout == "install ok installed", f"{package} is not installed here"

    checkout = tmp_path / "checkout"
    shutil.copytree(
        repo_root,
        checkout,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".ruff_cache", "var"
        ),
    )
    broker = tmp_path / "broker.sh"
    broker.write_text(BROKER)
    layers = tmp_path / "layers"
    mounts = []
    for folder in LAYERED:
        up, work = layers / "up" / folder.strip("/"), layers / "work" / folder.strip("/")
        up.mkdir(parents=True)
        work.mkdir(parents=True)
        mounts.append(f"mount -t overlay overlay -o lowerdir={folder},upperdir={up},workdir={work} {folder}")
    script = "\n".join(
        [
            "set -euo pipefail",
            *mounts,
            f"cd {shlex.quote(str(checkout))}",
            "set -x",
            steps[0],
            steps[1],
            steps[2],
            EDIT,
            steps[3],
            AFTER,
            f"unshare --net bash {shlex.quote(str(broker))}",
        ]
    )
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=800,
    )
    assert proc.returncode == 0 and "all steps done" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]
    # What the steps made is in the temporary layers, not on this machine.
    up = layers / "up"
    assert (up / "opt" / "urbansense" / "bin" / "urbansense").exists()
    assert (up / "etc" / "systemd" / "system" / "urbansense-edge.service").exists()
    assert "urbansense:" in (up / "etc" / "passwd").read_text()
    assert not Path("/opt/urbansense").exists()
    assert "urbansense:" not in Path("/etc/passwd").read_text()
