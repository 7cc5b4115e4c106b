"""A copy of the repository elsewhere, for tests about where it is cloned to."""

import os
import shutil

from conftest import REPO

TOP_LEVEL_OUTPUT = {".git", ".venv", ".demo", "user", ".pytest_cache"}
ANYWHERE = {"__pycache__", "node_modules", "artifacts"}


def copy_of_the_repository(destination):
    """The repository's files (not .git, .venv, node_modules or run output) at destination."""
    def ignore(folder, names):
        skipped = ANYWHERE | (TOP_LEVEL_OUTPUT if os.path.samefile(folder, REPO) else set())
        return [name for name in names if name in skipped]

    shutil.copytree(REPO, destination, ignore=ignore)
    return destination
