"""The README's Layout section matches the tree: every path it names exists, and every top-level
folder, every module and package of plugins/, of the library and of the local platform is named
there."""

from __future__ import annotations

import re
from fnmatch import fnmatch

import pytest

from storepulse.config import REPO_ROOT

# An entry: a path at column 0, or at column 2 (below the last folder at column 0), then two spaces
# or the line's end. Lines indented further continue the description above them.
_ENTRY = re.compile(r"^(?P<indent> {0,2})(?P<path>[\w./-]+)(?: {2,}|$)")
# Folders whose every module and package the layout names (the map a newcomer reads first).
_MAPPED_PACKAGES = ("plugins/", "plugins/storepulse/", "local/storepulse_local/")


def layout_paths(readme: str) -> list[str]:
    """The paths named by the Layout section's code block, relative to the repository."""
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    paths, parent = [], ""
    for line in block.splitlines():
        if not (entry := _ENTRY.match(line)):
            continue
        if entry["indent"]:
            paths.append(parent + entry["path"])
        else:
            paths.append(entry["path"])
            parent = entry["path"] if entry["path"].endswith("/") else ""
    return paths


@pytest.fixture(scope="module")
def named() -> list[str]:
    return layout_paths((REPO_ROOT / "README.md").read_text())


def test_layout_parsing_follows_the_indentation() -> None:
    block = ["pkg/    a package:", "  mod.py   a module", "         more words", "README"]
    readme = "\n## Layout\n\n```\n" + "\n".join(block) + "\n```\n\n## Next\n"
    assert layout_paths(readme) == ["pkg/", "pkg/mod.py", "README"]


def test_every_path_the_layout_names_exists(named: list[str]) -> None:
    missing = [path for path in named if not (REPO_ROOT / path).exists()]
    assert not missing, f"README's Layout names paths that do not exist: {missing}"


def test_every_top_level_folder_is_named(named: list[str]) -> None:
    ignored = [line for line in (REPO_ROOT / ".gitignore").read_text().splitlines() if line]
    folders = {
        p.name + "/"
        for p in REPO_ROOT.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and not any(fnmatch(p.name + "/", pattern) for pattern in ignored)  # build/, dist/
    }
    unnamed = sorted(f for f in folders if not any(n.startswith(f) for n in named))
    assert not unnamed, f"README's Layout does not name these folders: {unnamed}"


@pytest.mark.parametrize("package", _MAPPED_PACKAGES)
def test_every_module_of_the_library_and_the_local_platform_is_named(
    named: list[str], package: str
) -> None:
    members = {
        package + (p.name + "/" if p.is_dir() else p.name)
        for p in (REPO_ROOT / package).iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()
    }
    unnamed = sorted(members - set(named))
    assert not unnamed, f"README's Layout does not name: {unnamed}"
