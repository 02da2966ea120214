"""The installed package: every subpackage is listed, and the definition ships as data."""

from __future__ import annotations

import tomllib
from pathlib import Path

from totes.contract import DEFINITION_FILE_NAME, DEFINITION_PACKAGE, read_definition

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_of_ours_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("totes", "lambdas")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert set(config["packages"]) == on_disk | {DEFINITION_PACKAGE}
    assert config["package-dir"] == {DEFINITION_PACKAGE: "statemachine"}
    assert config["package-data"][DEFINITION_PACKAGE] == ["*.asl.json"]


def test_the_definition_is_read_from_the_package_and_is_the_repository_file():
    assert read_definition() == (ROOT / "statemachine" / DEFINITION_FILE_NAME).read_text()
