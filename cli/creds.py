"""`urbansense creds`: per-node broker credentials and the site's certificates.

Passwords are never printed: they go into the node's config file (where provisioning
copies them to the node) or into a file readable only by its owner."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cli.errors import CommandError
from cli.output import add_format_flags, print_json, print_table
from field.access import AccessError, BrokerAccess, new_shared_group, reload_broker
from field.pki import CertificateAuthority
from protocols.errors import ProtocolError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "creds",
        help="broker accounts (per-node passwords, ACLs) and certificates",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    csub = p.add_subparsers(title="creds commands", metavar="COMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--access-dir",
            required=True,
            type=Path,
            help="folder with access.json, passwd and acl (the broker's files)",
        )
        q.add_argument("--broker-pid", type=int, help="send the broker SIGHUP so it reloads at once")

    def secret_out(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--node-config",
            type=Path,
            help="write the password into this node config (config.json) as broker.password",
        )
        q.add_argument("--secret-file", type=Path, help="write the password to this file (mode 600)")

    a = csub.add_parser("add", help="create an account for a node or an edge")
    a.add_argument("user", help="node id, or the edge's username")
    a.add_argument("--role", choices=("node", "edge"), default="node")
    a.add_argument("--district", required=True)
    a.add_argument("--zone", required=True)
    common(a), secret_out(a)
    a.set_defaults(func=_add)

    r = csub.add_parser("rotate", help="give an account a new password (the old one stops working)")
    r.add_argument("user")
    common(r), secret_out(r)
    r.set_defaults(func=_rotate)

    v = csub.add_parser("revoke", help="remove an account")
    v.add_argument("user")
    common(v)
    v.set_defaults(func=_revoke)

    ls = csub.add_parser("list", help="list accounts and their scope")
    ls.add_argument("--access-dir", required=True, type=Path)
    add_format_flags(ls)
    ls.set_defaults(func=_list)

    ca = csub.add_parser("ca", help="create a site CA and the broker's server certificate")
    ca.add_argument("folder", type=Path, help="where ca.pem, ca.key and the broker certificate go")
    ca.add_argument(
        "--server-name",
        action="append",
        default=[],
        help="DNS name or IP of the broker (repeatable); default 127.0.0.1",
    )
    ca.set_defaults(func=_ca)

    g = csub.add_parser(
        "group",
        help="a new secret name for the edge workers' shared subscription ([mqtt] shared_group)",
    )
    g.set_defaults(func=_group)


def _require_destination(args: argparse.Namespace) -> None:
    # Checked before any change, so no account is ever made whose password went nowhere.
    if args.node_config is None and args.secret_file is None:
        raise CommandError("say where the password goes: --node-config FILE or --secret-file FILE", 2)


def _deliver(args: argparse.Namespace, user: str, password: str) -> str:
    where = []
    if args.node_config is not None:
        try:
            config = json.loads(args.node_config.read_text())
        except (OSError, ValueError) as err:
            raise CommandError(f"cannot read node config {args.node_config}: {err}") from None
        broker = config.setdefault("broker", {})
        broker["username"], broker["password"] = user, password
        args.node_config.write_text(json.dumps(config, indent=2))
        args.node_config.chmod(0o600)
        where.append(str(args.node_config))
    if args.secret_file is not None:
        fd = os.open(args.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        where.append(str(args.secret_file))
    return " and ".join(where)


def _finish(args: argparse.Namespace) -> None:
    if args.broker_pid:
        try:
            reload_broker(args.broker_pid)
        except ProcessLookupError:
            raise CommandError(
                f"no broker process {args.broker_pid}: changes apply at its next start"
            ) from None


def _add(args: argparse.Namespace) -> int:
    _require_destination(args)
    try:
        password = BrokerAccess(args.access_dir).add(args.user, args.role, args.district, args.zone)
    except (AccessError, ProtocolError) as err:
        raise CommandError(str(err)) from None
    where = _deliver(args, args.user, password)
    _finish(args)
    print(
        f"account {args.user} ({args.role}, {args.district}/{args.zone}) created; password written to {where}"
    )
    return 0


def _rotate(args: argparse.Namespace) -> int:
    _require_destination(args)
    try:
        password = BrokerAccess(args.access_dir).rotate(args.user)
    except AccessError as err:
        raise CommandError(str(err)) from None
    where = _deliver(args, args.user, password)
    _finish(args)
    print(f"account {args.user}: new password written to {where}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    try:
        BrokerAccess(args.access_dir).revoke(args.user)
    except AccessError as err:
        raise CommandError(str(err)) from None
    _finish(args)
    print(f"account {args.user} revoked")
    return 0


def _list(args: argparse.Namespace) -> int:
    accounts = BrokerAccess(args.access_dir).accounts()
    if args.json:
        print_json(accounts)
    else:
        print_table(
            ("user", "role", "district", "zone"),
            [(u, a["role"], a["district"], a["zone"]) for u, a in sorted(accounts.items())],
        )
    return 0


def _ca(args: argparse.Namespace) -> int:
    if (args.folder / "ca.key").exists():
        raise CommandError(f"{args.folder / 'ca.key'} exists: refusing to replace a CA")
    ca = CertificateAuthority.create(args.folder)
    server = ca.issue("broker", args.folder, server_names=args.server_name or ["127.0.0.1"])
    print(f"CA: {ca.files.cert}  broker certificate: {server.cert}  key: {server.key}")
    return 0


def _group(args: argparse.Namespace) -> int:
    # Printed, not filed: it goes into edge.toml, which is already readable by the edge only.
    print(f'shared_group = "{new_shared_group()}"')
    return 0
