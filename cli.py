"""Command line for a headless server: first admin key, admin password, keys.

Works on the database directly (the same SQLite file or PostgreSQL URL that
ComfyUI uses), so nothing needs to be opened over HTTP. Running ComfyUI
processes pick up changes within their refresh interval.

    python custom_nodes/<package> create-key --name ops --admin
    python custom_nodes/<package> set-password
    python custom_nodes/<package> sign-out-everywhere

It finds the database as the server does: --db, else COMFYUI_API_AUTH_DB,
else the one of the data directory: --data-dir or COMFYUI_API_AUTH_DATA_DIR,
else <user dir>/__api_auth with the user dir from --user-directory, else
<COMFYUI_DIR>/user, else <ComfyUI>/user when this folder is (or is reached
through) <ComfyUI>/custom_nodes/<package>. It never creates a database: the
server does at its first start, so a database that is not there means the
wrong place, and the command stops and asks where.
"""

import argparse
import getpass
import json
import os
import sys
import time

import peewee

from .core import keys as key_format
from .core import passwords, scopes, validation
from .core.config import ConfigError, load_settings
from .paths import DATA_DIR_NAME, DATA_DIR_VARIABLE, config_file, data_dir, db_file
from .storage import database as db_open
from .storage import migrations, repository
from .storage.models import ALL_MODELS

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
SAY_WHERE = ("Say where the server's database is: --user-directory DIR (ComfyUI's user folder), "
             "--data-dir DIR (<user folder>/" + DATA_DIR_NAME + ") or --db URL; or set COMFYUI_DIR, "
             "COMFYUI_API_AUTH_DATA_DIR or COMFYUI_API_AUTH_DB as for the server.")


def _package_folder_spellings() -> list[str]:
    """This folder's path, and the one the shell was cd'd through if that differs.

    ``cd ComfyUI/custom_nodes/<link> && python .`` gives a ``__file__`` under
    the link's target (the working directory resolves links); the shell's
    ``$PWD`` still says where the link is.
    """
    spellings = [PACKAGE_DIR]
    shell_dir = os.environ.get("PWD", "")
    if shell_dir and shell_dir != PACKAGE_DIR and os.path.realpath(shell_dir) == os.path.realpath(PACKAGE_DIR):
        spellings.append(shell_dir)
    return spellings


def _comfyui_user_directory() -> str | None:
    """<ComfyUI>/user when this folder is <ComfyUI>/custom_nodes/<package>, else None."""
    for folder in _package_folder_spellings():
        custom_nodes = os.path.dirname(folder)
        if os.path.basename(custom_nodes) == "custom_nodes":
            return os.path.join(os.path.dirname(custom_nodes), "user")
    return None


def _data_directory(options) -> str | None:
    """The server's data directory as the server computes it (runtime.default_data_dir)."""
    if options.data_dir:
        return os.path.abspath(options.data_dir)
    if os.environ.get(DATA_DIR_VARIABLE):
        return os.path.abspath(os.environ[DATA_DIR_VARIABLE])
    user_directory = options.user_directory
    if not user_directory and os.environ.get("COMFYUI_DIR"):
        user_directory = os.path.join(os.environ["COMFYUI_DIR"], "user")
    user_directory = user_directory or _comfyui_user_directory()
    return data_dir(os.path.abspath(user_directory)) if user_directory else None


def resolve_database_url(options) -> str:
    if options.db:
        return options.db
    data_directory = _data_directory(options)
    if data_directory is None:
        if os.environ.get("COMFYUI_API_AUTH_DB"):  # wins over config.json anyway
            return os.environ["COMFYUI_API_AUTH_DB"]
        raise SystemExit(f"error: cannot tell which ComfyUI this package belongs to: {PACKAGE_DIR} is not "
                         f"inside a ComfyUI custom_nodes folder (a link to it does not say where it is).\n{SAY_WHERE}")
    try:
        settings = load_settings(os.environ, config_file(data_directory))
    except ConfigError as error:
        raise SystemExit(f"error: bad setting {error}") from None
    return settings.db_url or db_open.sqlite_url(db_file(data_directory))


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL as storage.database opens it; None for other databases."""
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else None


def _open(options):
    url = resolve_database_url(options)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not os.path.isfile(sqlite_file):
        # opening it would create an empty database that no server reads
        raise SystemExit(f"error: there is no database at {os.path.abspath(sqlite_file)}; ComfyUI creates it "
                         f"when it first starts with this package.\n{SAY_WHERE}")
    try:
        database = db_open.open_database(url)
        database.bind(ALL_MODELS)
        if migrations.current_version(database) == 0:
            database.close()
            raise SystemExit(f"error: {db_open.describe(url)} holds no tables of this package yet; ComfyUI "
                             f"creates them when it first starts with this package.\n{SAY_WHERE}")
        migrations.ensure_ready(database)
    except (migrations.SchemaTooNew, db_open.DatabaseUrlError, peewee.OperationalError) as error:
        raise SystemExit(f"error: {error}") from None
    return database


def _audit(database, action, target="", **detail):
    repository.write_audit(database, [{"at": time.time(), "actor": "cli", "client": "command line",
                                       "action": action, "target": target, "detail": detail}])


def _key_json(record) -> dict:
    return {"key_id": record.key_id, "name": record.name, "prefix": record.prefix,
            "rate_limit": record.rate_limit, "is_active": record.is_active,
            "scopes": list(record.scopes), "metadata": record.metadata,
            "created_at": record.created_at, "last_used": record.last_used,
            "expires_at": record.expires_at, "allowed_ips": list(record.allowed_ips),
            "previous_key_valid_until": record.previous_valid_until}


def _expiry_text(record, now) -> str:
    if record.expires_at is None:
        return "never"
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(record.expires_at))
    return f"expired {when}" if record.expires_at <= now else f"expires {when}"


def cmd_create_key(options, database):
    try:
        fields = validation.parse_create({
            "name": options.name, "rate_limit": options.rate_limit,
            "metadata": json.loads(options.metadata) if options.metadata else {},
            "scopes": ["admin"] if options.admin else (options.scope or list(scopes.DEFAULT_SCOPES)),
            "expires_in_days": options.expires_in_days,
        })
    except (validation.InvalidInput, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    made = key_format.new_key()
    record = repository.create_key(database, **made.stored, now=time.time(), **fields)
    _audit(database, "key_create", record.key_id, name=record.name, scopes=list(record.scopes))
    if options.json:
        print(json.dumps({**_key_json(record), "api_key": made.plaintext}))
    else:
        print(f"key_id:  {record.key_id}\nname:    {record.name}\nscopes:  {','.join(record.scopes) or '-'}")
        print(f"expiry:  {_expiry_text(record, time.time())} (UTC)")
        print(f"api_key: {made.plaintext}\nSave this key now - it will not be shown again.")


def cmd_list_keys(options, database):
    records = repository.list_keys(database)
    if options.json:
        print(json.dumps([_key_json(record) for record in records]))
        return
    now = time.time()
    for record in records:
        state = "active" if record.is_active else "disabled"
        print(f"{record.key_id}  {record.prefix}…  {state:8}  {record.rate_limit:>10}/h  "
              f"{','.join(record.scopes) or '-':6}  {_expiry_text(record, now):24}  {record.name}")


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


def cmd_rotate_key(options, database):
    try:
        grace = validation.parse_rotate({"grace_seconds": options.grace_seconds})
    except validation.InvalidInput as error:
        raise SystemExit(f"error: {error}") from None
    made = key_format.new_key()
    record, _ = repository.rotate_key(database, options.key_id, made.key_hash, made.prefix, grace, time.time())
    if record is None:
        raise SystemExit(f"error: no key with key_id '{options.key_id}'")
    _audit(database, "key_rotate", record.key_id, grace_seconds=grace)
    if options.json:
        print(json.dumps({**_key_json(record), "api_key": made.plaintext}))
        return
    old = (f"the old key works until {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(record.previous_valid_until))} "
           "UTC" if grace else "the old key no longer works")
    print(f"key_id:  {record.key_id}\nname:    {record.name}\napi_key: {made.plaintext}\n"
          f"Save this key now - it will not be shown again; {old} (running servers: within their refresh interval).")


def cmd_set_password(options, database):
    if os.environ.get("COMFYUI_API_AUTH_ADMIN_PASSWORD"):
        # The variable is the password while it is set: ComfyUI would put it
        # back at its next start, silently undoing this change.
        raise SystemExit("error: COMFYUI_API_AUTH_ADMIN_PASSWORD is set, so the admin password is managed by the "
                         "environment: change the variable (and restart ComfyUI), or unset it to manage the "
                         "password here")
    if options.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New admin password: ")
        if getpass.getpass("Repeat: ") != password:
            raise SystemExit("error: the passwords differ")
    try:
        validation.validate_password(password)
    except validation.InvalidInput as error:
        raise SystemExit(f"error: {error}") from None
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
    where.add_argument("--db", help="database URL (default: COMFYUI_API_AUTH_DB, else the data directory's)")
    where.add_argument("--data-dir", help=f"the package's data directory (<user dir>/{DATA_DIR_NAME})")
    where.add_argument("--user-directory", help="ComfyUI's user directory (default: <COMFYUI_DIR>/user, "
                                                "else <ComfyUI>/user when run from <ComfyUI>/custom_nodes)")
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("create-key", help="create a key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--rate-limit", type=int, default=validation.DEFAULT_RATE_LIMIT)
    create.add_argument("--metadata", help="a JSON object")
    create.add_argument("--scope", action="append", choices=scopes.KNOWN_SCOPES,
                        help="a scope to give the key (repeatable; default: generate). "
                             + "; ".join(f"{name}: {text}" for name, text in scopes.SCOPE_SUMMARIES.items()))
    create.add_argument("--admin", action="store_true", help="give the key the admin scope (same as --scope admin)")
    create.add_argument("--expires-in-days", type=int, help="the key stops working after this many days "
                                                            "(default: never)")
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

    rotate = commands.add_parser("rotate-key", help="give a key a new secret (printed once); it keeps its id, "
                                                    "settings and usage")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace-seconds", type=int, default=0,
                        help=f"how long the old secret keeps working (0 to {validation.GRACE_SECONDS_MAX}; default 0)")
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(run=cmd_rotate_key)

    password = commands.add_parser("set-password", help="set the admin password (asked for, or read from stdin)")
    password.add_argument("--password-stdin", action="store_true")
    password.set_defaults(run=cmd_set_password)

    everywhere = commands.add_parser("sign-out-everywhere",
                                     help="end every browser session (admin and key); keys keep working")
    everywhere.set_defaults(run=cmd_sign_out_everywhere)
    return parser


def main(argv=None) -> int:
    options = build_parser().parse_args(argv)
    database = _open(options)
    try:
        options.run(options, database)
    finally:
        database.close()
    return 0
