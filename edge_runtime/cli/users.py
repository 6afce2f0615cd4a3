"""``edgecls users``: who may use the web pages (``--serve ... --users FILE``), and with which role."""

from __future__ import annotations

import argparse
import getpass
import sys

from edge_runtime.web.auth import (
    ROLES,
    User,
    check_name,
    check_new_password,
    hash_password,
    read_users,
    write_users,
)


def _password(a: argparse.Namespace) -> str:
    """From stdin's first line (--password-stdin), else typed twice at a prompt that does not echo."""
    if a.password_stdin:
        line = sys.stdin.readline()
        return check_new_password(line.removesuffix("\n").removesuffix("\r"))
    if not sys.stdin.isatty():
        raise ValueError("no terminal to ask for the password on: give it with --password-stdin")
    first = getpass.getpass(f"password for {a.name}: ")
    check_new_password(first)
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ; nothing was changed")
    return first


def cmd_add(a: argparse.Namespace) -> int:
    name = check_name(a.name)
    users = read_users(a.file, missing_ok=True)  # refuses a file others may read, or one that does not parse
    password = _password(a)
    old = users.get(name)
    users[name] = User(name, a.role, hash_password(password))
    write_users(a.file, users)
    what = "changed" if old else "added"
    print(f"edgecls: {what} {name} ({a.role}) in {a.file}; pages started with --users {a.file} see it at once",
          file=sys.stderr)
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    for u in sorted(read_users(a.file).values(), key=lambda u: u.name):
        print(f"{u.name} {u.role}")
    return 0


def cmd_remove(a: argparse.Namespace) -> int:
    users = read_users(a.file)
    if a.name not in users:
        raise ValueError(f"{a.file}: no user {a.name!r} (there are: {', '.join(sorted(users)) or 'none'})")
    del users[a.name]
    write_users(a.file, users)
    print(f"edgecls: removed {a.name} from {a.file}; their browser sessions end at once", file=sys.stderr)
    return 0


def add_users(sub: argparse._SubParsersAction) -> None:
    """``edgecls users``'s parser: add, list, remove."""
    p = sub.add_parser("users", help="who may use the web pages (--serve ... --users FILE): add, list, remove",
                       description="A users file for the web pages of camera, collect and review (--users FILE): "
                       "a viewer sees the pages, the live picture and the status; an admin also takes, moves and "
                       "discards photos. Passwords are kept as salted scrypt hashes; the file is written with mode "
                       "600, and a file others may read is refused. Actions: add FILE NAME --role admin|viewer "
                       "[--password-stdin] (asks for the password twice, or reads stdin's first line); list FILE; "
                       "remove FILE NAME. `edgecls users ACTION --help` explains each.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True, help="add, list or remove")
    add = actions.add_parser("add", help="add a user, or change one's password and role",
                             description="Add NAME to FILE (made if missing), or change its password and role. The "
                             "password is asked for twice without echo, or read from stdin's first line.")
    add.add_argument("file", metavar="FILE", help="the users file")
    add.add_argument("name", metavar="NAME", help="letters, digits, '.', '_', '@' or '-'")
    add.add_argument("--role", choices=ROLES, required=True, help="admin: everything; viewer: look, change nothing")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    add.set_defaults(func=cmd_add)
    ls = actions.add_parser("list", help="the users and their roles", description="NAME ROLE, one a line.")
    ls.add_argument("file", metavar="FILE", help="the users file")
    ls.set_defaults(func=cmd_list)
    rm = actions.add_parser("remove", help="remove a user (their sessions end at once)",
                            description="Remove NAME from FILE; pages serving with it log them out at once.")
    rm.add_argument("file", metavar="FILE", help="the users file")
    rm.add_argument("name", metavar="NAME", help="the user to remove")
    rm.set_defaults(func=cmd_remove)
    # `edgecls users --help` lists each action's own arguments too, formatted by argparse from the
    # action's parser (so they cannot drift from it), a section an action.
    for name, parser in actions.choices.items():
        f = argparse.HelpFormatter(parser.prog)
        f.add_arguments([a for a in parser._actions if a.help != argparse.SUPPRESS and a.dest != "help"])
        p.add_argument_group(f"{name}'s arguments", "\n".join("  " + line for line in f.format_help().rstrip().splitlines()))
