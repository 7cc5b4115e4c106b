"""Which key's work a file of ComfyUI's input, output and temp folders is.

A file is named here by a *ref*: ``(kind, path)``, the folder kind
(``input``, ``output``, ``temp``) and the file's path inside that folder,
normalised and with ``/`` separators. Every spelling ComfyUI accepts for a
file (``/view``'s ``filename``/``subfolder``/``type``, ``"name [output]"`` in
a workflow, ``sub/../name``, an upload's ``subfolder`` with ``..`` in its
``filename``) is reduced to the ref of the file it really opens, so a
spelling cannot get around the rules.

The rules, for a principal held to its own work (a non-admin key, ``pk``):

* an ``output`` or ``temp`` file may be read only when one of the key's own
  prompts produced it (or the key uploaded it there): these folders hold
  nothing but work, so a file nobody recorded (produced before the package
  was installed, or by an anonymous or admin prompt) is refused too, and so
  a guessed name tells nothing about whether the file exists;
* an ``input`` file another key uploaded is refused; an input file no key
  uploaded (the operator's own, example images) stays readable;
* an upload may replace (``overwrite``) only a file the key alone owns, or
  a new name.

A file may have several owners: ComfyUI gives an upload of bytes that are
already there the existing name, and re-sends a cached node's old outputs to
a prompt that computed the same thing; both callers had the bytes anyway.
A fresh write (a node that ran, an upload that wrote) makes the writer the
only owner (none, for a writer that is not a key).
"""

import os
import unicodedata

INPUT, OUTPUT, TEMP = "input", "output", "temp"
KINDS = (INPUT, OUTPUT, TEMP)
# Folders that hold only work: unrecorded files there are nobody's to read.
WORK_KINDS = frozenset((OUTPUT, TEMP))
# ComfyUI's folder_paths.annotated_filepath: the suffix and how much it cuts
# (it tests the suffix without its space and cuts one character more).
ANNOTATIONS = (("[output]", 9, OUTPUT), ("[input]", 8, INPUT), ("[temp]", 7, TEMP))
LONGEST_NAME = 4096  # longer strings in a workflow are text, never a file name


def annotated(name: str):
    """(name, kind or None), exactly as ComfyUI's ``annotated_filepath`` reads ``name``."""
    for suffix, cut, kind in ANNOTATIONS:
        if name.endswith(suffix):
            return name[:-cut], kind
    return name, None


class Folders:
    """The absolute input, output and temp folders (ComfyUI's ``folder_paths``)."""

    def __init__(self, input_dir: str, output_dir: str, temp_dir: str):
        self.dirs = {INPUT: os.path.abspath(input_dir), OUTPUT: os.path.abspath(output_dir),
                     TEMP: os.path.abspath(temp_dir)}
        # Deepest first, so a folder nested in another one wins.
        self._by_depth = sorted(self.dirs.items(), key=lambda item: len(item[1]), reverse=True)

    def ref_of(self, absolute: str):
        """The ref of an absolute path, or None when it is in none of the folders."""
        absolute = os.path.abspath(absolute)
        for kind, folder in self._by_depth:
            if absolute.startswith(folder) and absolute[len(folder):len(folder) + 1] == os.sep:
                relative = absolute[len(folder) + 1:]
                return kind, (relative if os.sep == "/" else relative.replace(os.sep, "/"))
        return None

    def ref(self, kind: str, subfolder: str, name: str):
        """The ref of ``name`` in ``subfolder`` of folder ``kind`` (any spelling), or None."""
        folder = self.dirs.get(kind)
        if folder is None:
            return None
        try:
            return self.ref_of(os.path.join(folder, subfolder or "", name))
        except (TypeError, ValueError):  # a NUL byte, a non-string
            return None

    def view_ref(self, filename: str, kind: str | None, subfolder: str | None):
        """The ref ``/view`` (and ``/upload/mask``'s original) opens, or None where
        ComfyUI answers 400/403/404 without opening anything."""
        name, annotated_kind = annotated(filename)
        if not name or name[0] == "/" or ".." in name:
            return None
        kind = annotated_kind or kind
        if kind not in self.dirs:
            return None
        return self.ref(kind, subfolder or "", os.path.basename(name))

    def workflow_ref(self, value: str):
        """The ref a loader opens for a workflow's string input (plain names are
        input files; ``get_annotated_filepath``), or None."""
        if not value or len(value) > LONGEST_NAME:
            return None
        name, kind = annotated(value)
        return self.ref(kind or INPUT, "", name)

    def path(self, ref) -> str:
        return os.path.join(self.dirs[ref[0]], *ref[1].split("/"))


def folded(path: str) -> str:
    """One spelling for every name a case- or normalization-insensitive file
    system (macOS, Windows) opens as the same file."""
    path = unicodedata.normalize("NFC", path).casefold()
    if os.name == "nt":  # Windows ignores trailing dots and spaces of a name
        path = "/".join(part.rstrip(". ") for part in path.split("/"))
    return path


class FileOwners:
    """Who owns which file: ref -> frozenset of key pks (in memory; the service
    loads it from and writes it to the database)."""

    def __init__(self):
        self.owners: dict[tuple, frozenset] = {}
        self.inputs: dict[str, frozenset] = {}  # the input files of ``owners``, by path
        self.spellings: dict[tuple, set] = {}   # (kind, folded path) -> the refs recorded with it
        self.version = 0        # changes with every change
        self.input_version = 0  # changes when an input file's owners change (the /object_info cache)

    def load(self, rows):
        """Rows of (kind, path, key pk)."""
        merged: dict[tuple, set] = {}
        for kind, path, key_pk in rows:
            merged.setdefault((kind, path), set()).add(key_pk)
        self.owners = {ref: frozenset(pks) for ref, pks in merged.items()}
        self.inputs = {ref[1]: pks for ref, pks in self.owners.items() if ref[0] == INPUT}
        self.spellings = {}
        for ref in self.owners:
            self.spellings.setdefault((ref[0], folded(ref[1])), set()).add(ref)
        self.version += 1
        self.input_version += 1

    def _set(self, ref, owners):
        fold = (ref[0], folded(ref[1]))
        if owners:
            self.owners[ref] = owners
            self.spellings.setdefault(fold, set()).add(ref)
        else:
            self.owners.pop(ref, None)
            same = self.spellings.get(fold)
            if same is not None:
                same.discard(ref)
                if not same:
                    del self.spellings[fold]
        if ref[0] == INPUT:
            if owners:
                self.inputs[ref[1]] = owners
            else:
                self.inputs.pop(ref[1], None)
            self.input_version += 1
        self.version += 1

    def replace(self, ref, owners):
        """What another process recorded for ``ref`` (its owners now)."""
        owners = frozenset(owners)
        if self.owners.get(ref, frozenset()) != owners:
            self._set(ref, owners)

    def written(self, ref, key_pk):
        """A fresh write of ``ref`` by ``key_pk`` (None: not a key). Returns the change to store."""
        self._set(ref, frozenset(()) if key_pk is None else frozenset((key_pk,)))
        return ("set", ref[0], ref[1], key_pk)

    def shared(self, ref, key_pk):
        """``key_pk`` got ``ref`` without writing it (a duplicate upload, a cached
        output). Returns the change to store, or None."""
        if key_pk is None:
            return None
        current = self.owners.get(ref, frozenset())
        if key_pk in current:
            return None
        self._set(ref, current | {key_pk})
        return ("add", ref[0], ref[1], key_pk)

    def may_read(self, key_pk, ref) -> bool:
        """Whether a principal held to ``key_pk`` may read ``ref``."""
        owners = self.owners.get(ref)
        if owners is not None:
            return key_pk in owners
        if ref[0] in WORK_KINDS:
            return False
        # Another spelling of a recorded input file ("A.PNG" for "a.png") opens
        # that file where the file system ignores case: it is read as that file.
        same = self.spellings.get((ref[0], folded(ref[1])))
        return same is None or all(key_pk in self.owners[other] for other in same)

    def may_replace(self, key_pk, ref, exists: bool) -> bool:
        """Whether a principal held to ``key_pk`` may overwrite ``ref``."""
        if not exists:
            return True
        same = self.spellings.get((ref[0], folded(ref[1]))) or ()
        return self.owners.get(ref) == frozenset((key_pk,)) and all(
            self.owners[other] == frozenset((key_pk,)) for other in same)

    def hidden_inputs(self, key_pk) -> set:
        """Input paths another key uploaded and ``key_pk`` did not."""
        return {path for path, owners in self.inputs.items() if key_pk not in owners}


def output_refs(folders: Folders, outputs):
    """Refs of the files a prompt's outputs name (history ``outputs`` or an
    ``executed`` message's ``output``: lists of {filename, subfolder, type})."""
    found = []
    for value in (outputs.values() if isinstance(outputs, dict) else ()):
        if not isinstance(value, (list, tuple)):
            continue
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("filename"), str):
                subfolder = item.get("subfolder") or ""
                ref = folders.ref(item.get("type") or OUTPUT, subfolder if isinstance(subfolder, str) else "",
                                  item["filename"])
                if ref is not None:
                    found.append(ref)
    return found


def node_outputs(history_outputs):
    """(node id, outputs) pairs of a history item's ``outputs``."""
    return list(history_outputs.items()) if isinstance(history_outputs, dict) else []


def cached_nodes(history_item) -> set:
    """Node ids a history item says came from the cache (``execution_cached``)."""
    status = history_item.get("status") if isinstance(history_item, dict) else None
    found = set()
    for message in (status or {}).get("messages") or []:
        if isinstance(message, (list, tuple)) and len(message) == 2 and message[0] == "execution_cached":
            nodes = message[1].get("nodes") if isinstance(message[1], dict) else None
            found.update(str(node) for node in nodes or ())
    return found


def foreign_file_in_prompt(prompt, key_pk, folders: Folders, owners: FileOwners, is_file=os.path.isfile):
    """The first (node id, input name, value) of a workflow that names a file
    ``key_pk`` may not read, or None. Every string input is looked at as a
    loader would open it; a work file nobody recorded counts only if it exists
    (a text input that happens to end in "[output]" names nothing)."""
    if not isinstance(prompt, dict):
        return None
    for node_id, node in prompt.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name, value in inputs.items():
            if not isinstance(value, str):
                continue
            ref = folders.workflow_ref(value)
            if ref is None or owners.may_read(key_pk, ref):
                continue
            if ref in owners.owners or is_file(folders.path(ref)):
                return str(node_id), name, value
    return None


def hidden_options(options, key_pk, folders: Folders, owners: FileOwners, hidden_inputs) -> set:
    """Which of a catalog's combo options (``/object_info``) name a file
    ``key_pk`` may not read: input files another key uploaded (listed by
    plain name, ``hidden_inputs``), and annotated names of others' files."""
    hidden = set()
    for option in options:
        if option in hidden_inputs:
            hidden.add(option)
        elif option.endswith("]"):
            ref = folders.workflow_ref(option)
            if ref is not None and not owners.may_read(key_pk, ref):
                hidden.add(option)
    return hidden


def combo_options(object_info) -> set:
    """Every string option of every combo input in an ``/object_info`` answer."""
    found = set()
    for _, _, _, options in _combos(object_info):
        found.update(option for option in options if isinstance(option, str))
    return found


def _combos(object_info):
    if not isinstance(object_info, dict):
        return
    for node_class, info in object_info.items():
        inputs = info.get("input") if isinstance(info, dict) else None
        if not isinstance(inputs, dict):
            continue
        for section, specs in inputs.items():
            if not isinstance(specs, dict):
                continue
            for name, spec in specs.items():
                if isinstance(spec, list) and spec and isinstance(spec[0], list):
                    yield node_class, section, name, spec[0]


def without_options(object_info, hidden: set):
    """A copy of an ``/object_info`` answer without the ``hidden`` combo options
    (only the nodes that list one are copied), or None when none is listed."""
    changed = None
    for node_class, section, name, options in list(_combos(object_info)):
        if not any(option in hidden for option in options if isinstance(option, str)):
            continue
        if changed is None:
            changed = dict(object_info)
        info = changed[node_class]
        if info is object_info[node_class]:
            info = changed[node_class] = {**info, "input": {key: dict(value) if isinstance(value, dict) else value
                                                            for key, value in info["input"].items()}}
        spec = list(info["input"][section][name])
        spec[0] = [option for option in options if not (isinstance(option, str) and option in hidden)]
        info["input"][section][name] = spec
    return changed
