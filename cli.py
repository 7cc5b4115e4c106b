"""Command line for a headless server: first admin key, admin password, keys.

Works on the database directly (the same SQLite file or PostgreSQL URL that
ComfyUI uses), so nothing needs to be opened over HTTP. Running ComfyUI
processes pick up changes within their refresh interval.

    python custom_nodes/<package> create-key --name ops --admin
    python custom_nodes/<package> set-password
    python custom_nodes/<package> sign-out-everywhere
"""

import argparse
import getpass
import json
import os
import sys
import time

from .auth import keys as key_format
from .auth import passwords, validation
from .auth.config import ConfigError, load_settings
from .storage import database as db_open
from .storage import migrations, repository

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _default_user_directory() -> str:
    # <ComfyUI>/custom_nodes/<package> -> <ComfyUI>/user
    return os.path.join(os.path.dirname(os.path.dirname(PACKAGE_DIR)), "user")


def resolve_database_url(options) -> str:
    if options.db:
        return options.db
    data_dir = options.data_dir or os.environ.get("COMFYUI_API_AUTH_DATA_DIR") or os.path.join(
        options.user_directory or _default_user_directory(), "__api_auth")
    try:
        settings = load_settings(os.environ, os.path.join(data_dir, "config.json"))
    except ConfigError as error:
        raise SystemExit(f"error: bad setting {error}")
    return settings.db_url or db_open.sqlite_url(os.path.join(data_dir, "auth.db"))


def _open(options):
    url = resolve_database_url(options)
    try:
        database = db_open.open_database(url)
        migrations.ensure_ready(database)
    except (migrations.SchemaTooNew, db_open.DatabaseUrlError) as error:
        raise SystemExit(f"error: {error}")
    return database, url


def _audit(database, action, target="", **detail):
    repository.write_audit(database, [{"at": time.time(), "actor": "cli", "client": "command line",
                                       "action": action, "target": target, "detail": detail}])


def _key_json(record) -> dict:
    return {"key_id": record.key_id, "name": record.name, "prefix": record.prefix,
            "rate_limit": record.rate_limit, "is_active": record.is_active,
            "scopes": list(record.scopes), "metadata": record.metadata,
            "created_at": record.created_at, "last_used": record.last_used}


def cmd_create_key(options, database):
    try:
        fields = validation.parse_create({
            "name": options.name, "rate_limit": options.rate_limit,
            "metadata": json.loads(options.metadata) if options.metadata else {},
            "scopes": ["admin"] if options.admin else [],
        })
    except (validation.InvalidInput, ValueError) as error:
        raise SystemExit(f"error: {error}")
    plaintext = key_format.generate_key()
    record = repository.create_key(
        database, key_id=key_format.generate_key_id(), key_hash=key_format.hash_key(plaintext),
        prefix=key_format.display_prefix(plaintext), now=time.time(), **fields)
    _audit(database, "key_create", record.key_id, name=record.name, scopes=list(record.scopes))
    if options.json:
        print(json.dumps({**_key_json(record), "api_key": plaintext}))
    else:
        print(f"key_id:  {record.key_id}\nname:    {record.name}\nscopes:  {','.join(record.scopes) or '-'}")
        print(f"api_key: {plaintext}\nSave this key now - it will not be shown again.")


def cmd_list_keys(options, database):
    records = repository.list_keys(database)
    if options.json:
        print(json.dumps([_key_json(record) for record in records]))
        return
    for record in records:
        state = "active" if record.is_active else "disabled"
        print(f"{record.key_id}  {record.prefix}…  {state:8}  {record.rate_limit:>10}/h  "
              f"{','.join(record.scopes) or '-':6}  {record.name}")


def _change(options, database, changes, verb):
    record = repository.update_key(database, options.key_id, changes, time.time())
    if record is None:
        raise SystemExit(f"error: no key with key_id '{options.key_id}'")
    _audit(database, "key_" + verb.rstrip("d"), record.key_id)
    print(f"{verb} {record.key_id} ({record.name})")


def cmd_disable_key(options, database):
    _change(options, database, {"is_active": False}, "disabled")


def cmd_enable_key(options, database):
    _change(options, database, {"is_active": True}, "enabled")


def cmd_delete_key(options, database):
    if repository.delete_key(database, options.key_id, time.time()) is None:
        raise SystemExit(f"error: no key with key_id '{options.key_id}'")
    _audit(database, "key_delete", options.key_id)
    print(f"deleted {options.key_id}")


def cmd_set_password(options, database):
    if options.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New admin password: ")
        if getpass.getpass("Repeat: ") != password:
            raise SystemExit("error: the passwords differ")
    try:
        validation.validate_password(password)
    except validation.InvalidInput as error:
        raise SystemExit(f"error: {error}")
    ended = repository.set_admin_password_hash(database, passwords.hash_password(password), time.time())
    _audit(database, "password_set", "admin", sessions_ended=len(ended))
    print(f"admin password set; {len(ended)} admin sessions ended")


def cmd_sign_out_everywhere(options, database):
    ended = repository.end_sessions(database, time.time())
    _audit(database, "sessions_ended", "all", ended=len(ended), kept_current=False)
    print(f"{len(ended)} sessions ended (admin and key sessions); running servers drop them within their "
          "refresh interval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python <package folder>", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", help="database URL (default: COMFYUI_API_AUTH_DB, else the SQLite file)")
    where.add_argument("--data-dir", help="the package's data directory (<user dir>/__api_auth)")
    where.add_argument("--user-directory", help="ComfyUI's user directory (default: <ComfyUI>/user)")
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("create-key", help="create a key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--rate-limit", type=int, default=validation.DEFAULT_RATE_LIMIT)
    create.add_argument("--metadata", help="a JSON object")
    create.add_argument("--admin", action="store_true", help="give the key the admin scope")
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=cmd_create_key)

    listing = commands.add_parser("list-keys", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_list_keys)

    for name, run, text in (("disable-key", cmd_disable_key, "disable a key (reversible)"),
                            ("enable-key", cmd_enable_key, "enable a disabled key"),
                            ("delete-key", cmd_delete_key, "delete a key for good")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("key_id")
        sub.set_defaults(run=run)

    password = commands.add_parser("set-password", help="set the admin password (asked for, or read from stdin)")
    password.add_argument("--password-stdin", action="store_true")
    password.set_defaults(run=cmd_set_password)

    everywhere = commands.add_parser("sign-out-everywhere",
                                     help="end every browser session (admin and key); keys keep working")
    everywhere.set_defaults(run=cmd_sign_out_everywhere)
    return parser


def main(argv=None) -> int:
    options = build_parser().parse_args(argv)
    database, _ = _open(options)
    try:
        options.run(options, database)
    finally:
        database.close()
    return 0
