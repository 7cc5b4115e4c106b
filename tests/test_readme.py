"""What the README and the other documents say is there, is there and works."""

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib

from conftest import REPO

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
MARKDOWN_NAME = re.compile(r"[\w./-]*\w\.md\b")
GITHUB_REPOSITORY = re.compile(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/#)\s`'\"]|$)")


def documents():
    """README.md, docs/*.md and the other READMEs (not tests/fixtures: copies of old text)."""
    found = []
    for parent, folders, files in os.walk(REPO):
        folders[:] = [name for name in folders
                      if not name.startswith(".") and name not in ("node_modules", "fixtures", "__pycache__")]
        found += [os.path.join(parent, name) for name in files if name.endswith(".md")]
    assert os.path.join(REPO, "README.md") in found and os.path.join(REPO, "docs", "user-guide.md") in found
    return sorted(found)


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def without_code(text):
    return re.sub(r"```.*?```", "", text, flags=re.S)


def heading_anchors(path):
    """GitHub's anchors for a Markdown file's headings."""
    anchors = set()
    for line in without_code(read(path)).splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def readme_section(title):
    text = read(os.path.join(REPO, "README.md"))
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_every_relative_link_in_the_documents_points_at_a_file_that_exists():
    broken = []
    for document in documents():
        for target in LINK.findall(without_code(read(document))):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(document), path)) if path else document
            if not os.path.exists(resolved) or not resolved.startswith(REPO + os.sep):
                broken.append((os.path.relpath(document, REPO), target))
            elif anchor and resolved.endswith(".md") and anchor not in heading_anchors(resolved):
                broken.append((os.path.relpath(document, REPO), target))
    assert not broken, broken


def test_the_documents_name_no_document_that_is_not_in_the_repository():
    """Not linked and not merely mentioned (DESIGN.md, notes beside the checkout)."""
    ours = {os.path.basename(path) for path in documents()} | {"README.md"}
    missing = []
    for document in documents():
        for name in MARKDOWN_NAME.findall(read(document)):
            here = os.path.join(os.path.dirname(document), name)
            if not (os.path.exists(here) or os.path.exists(os.path.join(REPO, name)) or os.path.basename(name) in ours):
                missing.append((os.path.relpath(document, REPO), name))
    assert not missing, missing


def test_one_repository_url_and_no_placeholders():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as handle:
        home = tomllib.load(handle)["project"]["urls"]["Repository"]
    expected = GITHUB_REPOSITORY.match(home).group(1)
    for document in documents():
        text = read(document)
        assert not re.search(r"<this (repo|repository)>|<repo(sitory)?[ _-]?url>", text, re.I), document
        for repository in GITHUB_REPOSITORY.findall(text):
            if repository.split("/")[0].lower() != "comfyanonymous":  # ComfyUI itself
                assert repository == expected, (document, repository)
    assert expected in readme_section("Install into ComfyUI")


def test_every_variable_run_sh_reads_is_in_the_readme():
    variables = set(re.findall(r"\$\{([A-Z_]+):-", read(os.path.join(REPO, "run.sh"))))
    assert {"PORT", "LISTEN", "COMFYUI_DIR", "COMFYUI_PYTHON"} <= variables
    section = readme_section("The two commands")
    assert [name for name in sorted(variables) if f"`{name}" not in section] == []


def documented_fields(route):
    """Backquoted names in the README's response column for a route; "the key's
    fields" stands for those listed with GET /api/keys."""
    section = readme_section("HTTP API")
    row = next(line for line in section.splitlines() if line.startswith(f"| `{route}"))
    response = row.strip().strip("|").split("|")[3]
    names = set(re.findall(r"`(\w+)`", response))
    if "the key's fields" in response and route != "GET /api/keys":
        names |= documented_fields("GET /api/keys") - {"keys"}
    return names


def test_the_key_routes_table_names_every_field_the_server_answers(host):
    created = host.create_key("documented", job_limits={"prompts_per_hour": 5})
    key_id = created["key_id"]
    listed = host.get("/api/keys").json()
    answers = {
        "POST /api/keys": created,
        "GET /api/keys": {"keys": None, **listed["keys"][0]},
        "GET /api/keys/{key_id}": host.get(f"/api/keys/{key_id}").json(),
        "PATCH /api/keys/{key_id}": host.patch(f"/api/keys/{key_id}", json={"rate_limit": 7}).json(),
        "GET /api/usage": host.get("/api/usage", headers={"X-API-Key": created["api_key"]}).json(),
    }
    for route, answer in answers.items():
        undocumented = sorted(set(answer) - documented_fields(route))
        assert not undocumented, (route, undocumented)
    for field in ("job_limits", "requests_this_hour", "last_used"):
        assert field in documented_fields("POST /api/keys") and field in documented_fields("GET /api/keys")


def readme_cli_lines():
    block = re.search(r"```bash\n(python custom_nodes/comfyui-api-auth .*?)```",
                      readme_section("Becoming admin"), re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line]


def test_the_readmes_command_lines_run_one_by_one_against_the_server(host):
    """As written, from the ComfyUI folder (KEY_ID from create-key's output)."""
    comfyui = host.workdir
    os.makedirs(os.path.join(comfyui, "custom_nodes"))
    os.symlink(REPO, os.path.join(comfyui, "custom_nodes", "comfyui-api-auth"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_")}
    env.update(host.env, PWD=comfyui)
    commands = [shlex.split(line) for line in readme_cli_lines()]
    assert [words[2] for words in commands] == ["create-key", "set-password", "sign-out-everywhere", "list-keys",
                                                "disable-key", "enable-key", "delete-key"]
    key_id = None
    for words in commands:
        assert words[:2] == ["python", "custom_nodes/comfyui-api-auth"] and "|" not in words, words
        argv = [sys.executable, *(key_id if word == "KEY_ID" else word for word in words[1:])]
        # no terminal: set-password reads its two answers from stdin
        result = subprocess.run(argv, cwd=comfyui, env=env, input="a long enough password\n" * 2,
                                capture_output=True, text=True, timeout=60, start_new_session=True)
        assert result.returncode == 0, (words, result.stderr)
        if words[2] == "create-key":
            key_id = re.search(r"key_id:\s+(\S+)", result.stdout).group(1)
        if words[2] == "list-keys":
            assert key_id in result.stdout
    listing = subprocess.run([sys.executable, "custom_nodes/comfyui-api-auth", "list-keys", "--json"], cwd=comfyui,
                             env=env, capture_output=True, text=True, timeout=60, check=True)
    assert key_id not in [key["key_id"] for key in json.loads(listing.stdout) if key.get("is_active")]
