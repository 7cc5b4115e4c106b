"""The pure rules of core/file_owners: how every spelling of a file reduces to
one ref, who may read or replace it, workflows and /object_info's lists."""

import os

import pytest

from conftest import package_module

rules = package_module("core.file_owners")
ALICE, BOB = 1, 2


@pytest.fixture
def folders(tmp_path):
    for name in ("input", "output", "temp"):
        (tmp_path / name).mkdir()
    return rules.Folders(str(tmp_path / "input"), str(tmp_path / "output"), str(tmp_path / "temp"))


def owners_with(*entries):
    owners = rules.FileOwners()
    for ref, key_pk in entries:
        owners.written(ref, key_pk)
    return owners


def test_annotations_are_cut_as_comfyui_cuts_them():
    assert rules.annotated("x.png [output]") == ("x.png", "output")
    assert rules.annotated("x.png [temp]") == ("x.png", "temp")
    assert rules.annotated("x.png [input]") == ("x.png", "input")
    assert rules.annotated("x.png") == ("x.png", None)
    # ComfyUI tests the suffix without its space and cuts one character more.
    assert rules.annotated("x.png[output]") == ("x.pn", "output")


@pytest.mark.parametrize("filename, kind, subfolder, expected", [
    ("a.png", "output", None, ("output", "a.png")),
    ("a.png", "output", "", ("output", "a.png")),
    ("a.png", "output", "s", ("output", "s/a.png")),
    ("a.png", "output", "s/", ("output", "s/a.png")),
    ("a.png", "output", "./s/../s", ("output", "s/a.png")),
    ("a.png [output]", "input", "s", ("output", "s/a.png")),
    ("a.png [temp]", "nonsense", "", ("temp", "a.png")),
    ("dir/a.png", "input", "", ("input", "a.png")),      # /view keeps the base name only
    ("a.png", "input", "../output", ("output", "a.png")),  # ComfyUI refuses it; the ref is still right
    ("a.png", "nonsense", "", None),                   # ComfyUI: 400
    ("../a.png", "output", "", None),                  # ComfyUI: 400
    ("/etc/passwd", "output", "", None),               # ComfyUI: 400
    ("", "output", "", None),
    ("a.png", "output", "/etc", None),                 # outside every folder
])
def test_view_spellings_reduce_to_the_file_comfyui_opens(folders, filename, kind, subfolder, expected):
    assert folders.view_ref(filename, kind, subfolder) == expected


def test_absolute_subfolder_inside_the_folder_is_the_same_file(folders):
    absolute = os.path.join(folders.dirs["output"], "s")
    assert folders.view_ref("a.png", "output", absolute) == ("output", "s/a.png")


@pytest.mark.parametrize("value, expected", [
    ("a.png", ("input", "a.png")),
    ("a.png [output]", ("output", "a.png")),
    ("s/a.png [temp]", ("temp", "s/a.png")),
    ("../output/a.png", ("output", "a.png")),
    ("./x/../a.png", ("input", "a.png")),
    ("/etc/passwd", None),
    ("", None),
    ("x" * 5000, None),
])
def test_workflow_values_reduce_to_the_file_a_loader_opens(folders, value, expected):
    assert folders.workflow_ref(value) == expected


def test_reading_outputs_needs_ownership_inputs_only_not_anothers():
    owners = owners_with((("output", "a.png"), ALICE), (("input", "up.png"), ALICE))
    assert owners.may_read(ALICE, ("output", "a.png"))
    assert not owners.may_read(BOB, ("output", "a.png"))
    assert not owners.may_read(BOB, ("output", "unknown.png"))   # work nobody recorded
    assert not owners.may_read(BOB, ("temp", "unknown.png"))
    assert owners.may_read(BOB, ("input", "operator.png"))       # the operator's input
    assert not owners.may_read(BOB, ("input", "up.png"))
    assert owners.hidden_inputs(BOB) == {"up.png"} and owners.hidden_inputs(ALICE) == set()


def test_other_spellings_of_an_input_file_are_read_as_that_file():
    """On macOS and Windows "SECRET.png" opens "secret.png" (and NFD "é" opens NFC "é")."""
    owners = owners_with((("input", "sub/secret.png"), ALICE), (("input", "caf\u00e9.png"), ALICE))
    for spelling in ("sub/SECRET.png", "SUB/secret.PNG", "cafe\u0301.png", "CAF\u00c9.png"):
        assert not owners.may_read(BOB, ("input", spelling)), spelling
        assert owners.may_read(ALICE, ("input", spelling)), spelling
        assert not owners.may_replace(BOB, ("input", spelling), exists=True)
    owners.written(("input", "sub/secret.png"), None)
    assert owners.may_read(BOB, ("input", "sub/SECRET.png"))
    assert ("input", "sub/secret.png") not in owners.spellings


def test_a_fresh_write_replaces_the_owners_and_a_shared_copy_adds_one():
    owners = owners_with((("output", "a.png"), BOB))
    assert owners.written(("output", "a.png"), ALICE) == ("set", "output", "a.png", ALICE)
    assert not owners.may_read(BOB, ("output", "a.png"))
    assert owners.shared(("output", "a.png"), BOB) == ("add", "output", "a.png", BOB)
    assert owners.shared(("output", "a.png"), BOB) is None
    assert owners.may_read(BOB, ("output", "a.png")) and owners.may_read(ALICE, ("output", "a.png"))
    # A write by no key leaves the file with no owner.
    owners.written(("input", "x.png"), ALICE)
    owners.written(("input", "x.png"), None)
    assert owners.may_read(BOB, ("input", "x.png")) and "x.png" not in owners.inputs


def test_only_a_sole_owner_may_replace_an_existing_file():
    owners = owners_with((("input", "a.png"), ALICE))
    assert owners.may_replace(ALICE, ("input", "a.png"), exists=True)
    assert not owners.may_replace(BOB, ("input", "a.png"), exists=True)
    assert not owners.may_replace(BOB, ("input", "operator.png"), exists=True)
    assert owners.may_replace(BOB, ("input", "new.png"), exists=False)
    owners.shared(("input", "a.png"), BOB)
    assert not owners.may_replace(ALICE, ("input", "a.png"), exists=True)


def test_load_merges_rows_per_file():
    owners = rules.FileOwners()
    owners.load([("output", "a.png", ALICE), ("output", "a.png", BOB), ("input", "b.png", BOB)])
    assert owners.owners[("output", "a.png")] == {ALICE, BOB}
    assert owners.inputs == {"b.png": frozenset({BOB})}


def test_a_workflow_naming_anothers_file_is_found_with_node_and_input(folders):
    owners = owners_with((("output", "a.png"), ALICE), (("input", "up.png"), ALICE))
    open(os.path.join(folders.dirs["output"], "nobodys.png"), "wb").close()
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "color": 0}},
              "2": {"class_type": "LoadImage", "inputs": {"image": "a.png [output]"}}}
    assert rules.foreign_file_in_prompt(prompt, BOB, folders, owners) == ("2", "image", "a.png [output]")
    assert rules.foreign_file_in_prompt(prompt, ALICE, folders, owners) is None
    for value in ("up.png", "x/../up.png", "nobodys.png [output]", "../output/a.png"):
        prompt["2"]["inputs"]["image"] = value
        assert rules.foreign_file_in_prompt(prompt, BOB, folders, owners) == ("2", "image", value)
    for value in ("operator.png", "a caption [output]", ["1", 0], 7):
        prompt["2"]["inputs"]["image"] = value
        assert rules.foreign_file_in_prompt(prompt, BOB, folders, owners) is None
    for hostile in (None, [], {"1": None}, {"1": {"inputs": None}}, {"1": {"inputs": []}}):
        assert rules.foreign_file_in_prompt(hostile, BOB, folders, owners) is None


def test_object_info_loses_only_the_hidden_options_and_copies_only_what_it_changes(folders):
    owners = owners_with((("input", "alice.png"), ALICE), (("output", "out.png"), ALICE))
    info = {"LoadImage": {"input": {"required": {"image": [["alice.png", "bob.png", "op.png"], {"image_upload": True}]}}},
            "Other": {"input": {"required": {"ckpt": [["model.safetensors", "out.png [output]"]], "n": ["INT", {}]}}},
            "Plain": {"input": {"required": {"text": ["STRING", {}]}}}}
    options = rules.combo_options(info)
    hidden = rules.hidden_options(options, BOB, folders, owners, owners.hidden_inputs(BOB))
    assert hidden == {"alice.png", "out.png [output]"}
    filtered = rules.without_options(info, hidden)
    assert filtered["LoadImage"]["input"]["required"]["image"] == [["bob.png", "op.png"], {"image_upload": True}]
    assert filtered["Other"]["input"]["required"]["ckpt"] == [["model.safetensors"]]
    assert filtered["Plain"] is info["Plain"]
    assert info["LoadImage"]["input"]["required"]["image"][0] == ["alice.png", "bob.png", "op.png"]  # untouched
    assert rules.without_options(info, set()) is None
    assert rules.hidden_options(options, ALICE, folders, owners, owners.hidden_inputs(ALICE)) == set()


def test_history_outputs_and_cached_nodes(folders):
    outputs = {"images": [{"filename": "a.png", "subfolder": "s", "type": "output"},
                          {"filename": "b.png", "subfolder": "", "type": "temp"}, "junk", {"filename": 3}],
               "text": ["hello"]}
    assert rules.output_refs(folders, outputs) == [("output", "s/a.png"), ("temp", "b.png")]
    assert rules.output_refs(folders, None) == []
    item = {"status": {"messages": [["execution_start", {}], ["execution_cached", {"nodes": ["3", 4]}]]}}
    assert rules.cached_nodes(item) == {"3", "4"}
    assert rules.cached_nodes({"status": None}) == set()


# ---- storage (SQLite, or PostgreSQL with TEST_DATABASE_URL) ----------------------------------------

@pytest.mark.asyncio
async def test_owners_survive_a_restart_whatever_the_file_names_hold(tmp_path):
    from conftest import ON_POSTGRES, drop_postgres_database, fresh_postgres_database
    runtime_module = package_module("runtime")
    repository = package_module("storage.repository")
    environ = {"COMFYUI_API_AUTH": "require"}
    database = fresh_postgres_database() if ON_POSTGRES else None
    if database:
        environ["COMFYUI_API_AUTH_DB"] = database
    names = ["plain.png", "sub/dir/x.png", "nul\0.png", "undecodable\udc80.png", "é ü 漢字.png", "'; DROP TABLE x;--",
             "long/" + "d" * 250 + "/" + "f" * 3000]
    try:
        for round_ in range(2):
            runtime = runtime_module.AuthRuntime(str(tmp_path / "data"), environ=environ)
            runtime.load_settings()
            await runtime.start()
            assert runtime.ready, runtime.problem
            try:
                if round_ == 0:
                    for name in names:
                        runtime.files.written(("output", name), ALICE)
                        runtime.files.shared(("output", name), BOB)
                    runtime.files.written(("input", "up.png"), ALICE)
                    runtime.files.written(("input", "up.png"), BOB)   # replaced: BOB alone
                    runtime.files.written(("input", "gone.png"), ALICE)
                    runtime.files.written(("input", "gone.png"), None)  # no owner any more
                    await runtime.flush()
                else:
                    owners = runtime.files.owners
                    for name in names:
                        assert owners.owners[("output", name)] == {ALICE, BOB}, name
                    assert owners.owners[("input", "up.png")] == {BOB}
                    assert ("input", "gone.png") not in owners.owners
                    rows, _ = await runtime.db.run(repository.file_owner_rows)
                    assert len(rows) == 2 * len(names) + 1
            finally:
                await runtime.stop()
    finally:
        if database:
            drop_postgres_database(database)
