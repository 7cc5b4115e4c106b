"""The command line finds the server's database, or refuses and says how to name it.

run.sh links a clone into ComfyUI/custom_nodes/comfyui-api-auth; run from the
clone's own folder, the command line cannot see the link. It must then stop
(naming --user-directory / --data-dir / --db) rather than create a database
that no server reads, and it never creates a database anywhere: the server
does at its first start.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import (ON_POSTGRES, drop_postgres_database, fresh_postgres_database, host_data_dir, package_module,
                      query_database)
from repo_copy import copy_of_the_repository

layout = package_module("paths")
WHERE = ("--user-directory", "--data-dir", "--db")
REFRESH = {"COMFYUI_API_AUTH_REFRESH_INTERVAL": "0.1"}


def cli(package, *args, cwd, shell_dir=None, env=None, stdin=None):
    """``python <package> args`` as a shell would run it (``$PWD`` = where it cd'd)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_") and k != "PWD"}
    clean["PYTHONDONTWRITEBYTECODE"] = "1"  # the listing checks below see every new file
    clean["PWD"] = str(shell_dir or cwd)
    clean.update(env or {})
    return subprocess.run([sys.executable, str(package), *args], cwd=cwd, env=clean, input=stdin,
                          capture_output=True, text=True, timeout=60)


def files_under(folder, leave_out=()):
    found = set()
    for parent, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if os.path.join(parent, name) not in leave_out]
        found.update(os.path.join(parent, name) for name in folders + files)
    return found


def assert_refused(result):
    assert result.returncode != 0, result.stdout
    assert all(option in result.stderr for option in WHERE), result.stderr
    assert "api_key" not in result.stdout


@pytest.fixture
def linked_install(make_host, tmp_path):
    """A server whose folder is ComfyUI's, and a clone linked into its custom_nodes, as run.sh does."""
    host = make_host(env=dict(REFRESH))
    clone = copy_of_the_repository(tmp_path / "src" / "comfyui-api-auth")
    link = os.path.join(host.workdir, "custom_nodes", "comfyui-api-auth")
    os.makedirs(os.path.dirname(link))
    os.symlink(clone, link)
    return host, str(clone), link


def key_names(host):
    return [key["name"] for key in host.get("/api/keys").json()["keys"]]


def wait_for_key(host, name, timeout=10):
    deadline = time.time() + timeout
    while name not in key_names(host):
        assert time.time() < deadline, f"the server never saw key {name!r}"
        time.sleep(0.05)


def test_from_the_linked_clones_own_folder_it_refuses_and_writes_nothing(linked_install, tmp_path):
    host, clone, _ = linked_install
    leave_out = {host_data_dir(host), host.log_path}
    before = files_under(tmp_path, leave_out)
    for command in (["create-key", "--name", "ops", "--admin"], ["list-keys"],
                    ["set-password", "--password-stdin"]):
        result = cli(".", *command, cwd=clone, stdin="a long enough password\n")
        assert_refused(result)
        assert "custom_nodes" in result.stderr, result.stderr
    assert files_under(tmp_path, leave_out) == before
    assert "ops" not in key_names(host)


def test_through_the_link_it_uses_the_servers_database(linked_install, tmp_path):
    host, clone, link = linked_install
    server_env = dict(host.env)  # on PostgreSQL the server's COMFYUI_API_AUTH_DB
    created = cli(link, "create-key", "--name", "via the link", "--admin", "--json", cwd=tmp_path, env=server_env)
    assert created.returncode == 0, created.stderr
    wait_for_key(host, "via the link")
    key = json.loads(created.stdout)
    status = host.get("/api/auth/status", headers={"Authorization": "Bearer " + key["api_key"]}).json()
    assert status["principal"].get("key_id") == key["key_id"] and status["is_admin"] is True
    # `cd ComfyUI/custom_nodes/comfyui-api-auth && python .`: the working directory
    # is the clone's real folder, the shell's $PWD still the link
    listed = cli(".", "list-keys", "--json", cwd=link, shell_dir=link, env=server_env)
    assert listed.returncode == 0, listed.stderr
    assert "via the link" in [key["name"] for key in json.loads(listed.stdout)]


@pytest.mark.parametrize("variable", ["COMFYUI_DIR", "COMFYUI_API_AUTH_DATA_DIR"])
def test_the_environment_says_where_the_server_is_as_for_the_server(linked_install, variable):
    host, clone, _ = linked_install
    place = host.workdir if variable == "COMFYUI_DIR" else host_data_dir(host)
    env = {**host.env, variable: place}
    created = cli(".", "create-key", "--name", variable, "--json", cwd=clone, env=env)
    assert created.returncode == 0, created.stderr
    wait_for_key(host, variable)


@pytest.mark.parametrize("command", [["create-key", "--name", "ops", "--admin"], ["list-keys"],
                                     ["set-password", "--password-stdin"]])
@pytest.mark.parametrize("place", ["--user-directory", "--data-dir", "--db"])
def test_a_named_place_without_a_database_is_refused_not_created(tmp_path, place, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    data_dir = layout.data_dir(str(empty / "user"))
    value = {"--user-directory": str(empty / "user"), "--data-dir": data_dir,
             "--db": "sqlite:///" + layout.db_file(data_dir)}[place]
    result = cli(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), place, value, *command,
                 cwd=tmp_path, stdin="a long enough password\n")
    assert_refused(result)
    assert layout.db_file(data_dir) in result.stderr
    assert list(empty.iterdir()) == []


@pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL (PostgreSQL)")
def test_a_postgresql_database_without_the_packages_tables_is_refused_and_left_empty(tmp_path):
    url = fresh_postgres_database()
    try:
        result = cli(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "--db", url,
                     "create-key", "--name", "ops", "--admin", cwd=tmp_path)
        assert_refused(result)
        assert "no tables" in result.stderr

        class Empty:  # query_database's view of a host
            own_database = url
            env = {}
        tables = query_database(Empty, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert tables == [(0,)]
    finally:
        drop_postgres_database(url)
