"""`safekit api ...` (users, tokens, certificates) and `safekit -H NODE|"*" CMD` (a command on
other nodes through their API)."""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import subprocess
import sys
from typing import Any

from safekit import commands
from safekit.api.auth import AuthError, CredentialStore, Role
from safekit.api.client import (
    ApiClient,
    ApiClientError,
    cli_token_source,
    client_context,
    node_addresses,
    remote_transport,
    resolve_hosts,
    who_am_i,
)
from safekit.api.files import DEFAULT_PORT, ApiFiles
from safekit.config import ConfigError, NotANode, load_cluster
from safekit.host.paths import Paths

REMOTE_COMMANDS = {
    *commands.MODULE_COMMANDS,
    *commands.SWITCHES,
    "state",
    "get",
    "set",
    "log",
    "waitstate",
    "waitstart",
    "waitstop",
    "config",
    "cluster",  # `cluster reload` only (the others act on this node's files)
}


def add_parser(subparsers: Any) -> None:
    api = subparsers.add_parser(
        "api",
        help="API users, tokens and certificates (the console and REST API on port 9453)",
        description="Users and tokens of this node's API (stored hashed in /etc/safekit/api; copy the "
        "files to every node, or run the same commands on each) and its TLS certificate.",
    )
    cmds = api.add_subparsers(dest="api_command", metavar="COMMAND", required=True)
    user = cmds.add_parser("user", help="console users (user name + password)")
    user_cmds = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_cmds.add_parser("add", help="add a user (asks the password, or reads it from stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--replace", action="store_true", help="change an existing user's password and role")
    delete = user_cmds.add_parser("del", help="remove a user")
    delete.add_argument("name")
    user_cmds.add_parser("list", help="the users and their roles")

    token = cmds.add_parser("token", help="bearer tokens for scripts and `safekit -H` from elsewhere")
    token_cmds = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_cmds.add_parser("create", help="a new token, printed once (only its hash is kept)")
    create.add_argument("--role", choices=[r.value for r in Role], required=True)
    create.add_argument("--name", default="token", help="what the audit log calls it")
    create.add_argument("--days", type=float, help="expires after this many days (default never)")
    token_cmds.add_parser("list", help="the tokens (never their secret)")
    revoke = token_cmds.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id")

    cmds.add_parser(
        "cert", help="write the cluster CA and this node's certificate now (safekitd does it at start)"
    )


def _store(paths: Paths) -> CredentialStore:
    files = ApiFiles.from_paths(paths)
    return CredentialStore(files.users, files.tokens)


def run(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    try:
        if args.api_command == "user":
            return _user(args, _store(paths))
        if args.api_command == "token":
            return _token(args, _store(paths))
        return _cert(paths)
    except AuthError as exc:
        raise commands.CommandError(str(exc)) from exc


def _user(args: argparse.Namespace, store: CredentialStore) -> int:
    if args.user_command == "add":
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.name}: ")
            if getpass.getpass("again: ") != password:
                raise commands.CommandError("the passwords differ")
        store.add_user(args.name, password, Role(args.role), replace=args.replace)
        print(f"user {args.name} ({args.role}) saved in {store.users_path}")
    elif args.user_command == "del":
        store.remove_user(args.name)
        print(f"user {args.name} removed")
    else:
        for name, entry in sorted(store.users().items()):
            print(f"{name:<20} {entry.get('role', '?'):<8} created {entry.get('created', '?')}")
    return 0


def _token(args: argparse.Namespace, store: CredentialStore) -> int:
    action = args.token_command
    if action == "create":
        token = store.create_token(Role(args.role), args.name, args.days)
        print(token)
        print(
            f"(role {args.role}; shown once: keep it safe. Revoke: safekit api token revoke "
            f"{token.split('_')[1]})",
            file=sys.stderr,
        )
    elif action == "revoke":
        store.revoke_token(args.id)
        print(f"token {args.id} revoked")
    else:
        for ident, entry in sorted(store.tokens().items()):
            expires = entry.get("expires") or "never"
            print(f"{ident}  {entry.get('name', ''):<20} {entry.get('role', '?'):<8} expires {expires}")
    return 0


def _cert(paths: Paths) -> int:
    try:
        cluster = load_cluster(paths.cluster_xml)
    except (ConfigError, OSError) as exc:
        raise commands.CommandError(f"{paths.cluster_xml}: {exc}") from exc
    from safekit.checkers.probes import address_present  # noqa: PLC0415 - only this command needs it

    try:
        name = cluster.local_node(socket.gethostname(), address_present)
    except NotANode as exc:
        raise commands.CommandError(str(exc)) from exc
    addresses = node_addresses(cluster)[name].addresses
    result = subprocess.run(
        [sys.executable, "-m", "safekit.api.certs", "--node", name, *addresses],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise commands.CommandError(result.stderr.strip())
    files = ApiFiles.from_paths(paths)
    print(
        f"{files.node_cert} ({result.stdout.strip()}), CA {files.ca_cert}; "
        "restart safekitd to serve a new one"
    )
    return 0


# ---------------------------------------------------------------------- -H


def run_remote(args: argparse.Namespace, port: int = DEFAULT_PORT) -> int:
    """Run the command on each node of `-H` through its API; exit code: the worst of them."""
    if (
        args.command not in REMOTE_COMMANDS
        or (args.command == "config" and args.config_command)
        or (args.command == "cluster" and args.cluster_command != "reload")
    ):
        raise commands.CommandError(f"'{args.command}' is not available with -H (run it on the node)")
    paths = Paths.from_env()
    try:
        nodes = resolve_hosts(args.hosts, node_addresses(load_cluster(paths.cluster_xml)))
        context = client_context(ApiFiles.from_paths(paths).trust)
        token = cli_token_source(paths, who_am_i())
    except (ConfigError, OSError) as exc:
        raise commands.CommandError(f"-H needs this node's cluster.xml: {exc}") from exc
    except ApiClientError as exc:
        raise commands.CommandError(str(exc)) from exc
    worst = 0
    for node in nodes:
        if len(nodes) > 1 or args.hosts == "*":
            print(f"{'-' * 20} {node.name} {'-' * 20}", flush=True)
        client = ApiClient(node, context, token, port)
        with commands.use_transport(remote_transport(client)):
            try:
                code = commands.apply_config(args) if args.command == "config" else commands.run(args)
            except commands.CommandError as exc:
                print(f"safekit {args.command}: {node.name}: {exc}", file=sys.stderr)
                code = 1
        sys.stdout.flush()
        worst = max(worst, code)
    return worst


def dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
