"""The Lambda build: only the wheels each stage needs, and every folder under the limit."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from stacks.lambda_packaging import (
    ARCHITECTURE,
    FUNCTION_REQUIREMENTS,
    LAMBDA_BUILD_DIR,
    PIP_PLATFORMS,
)

pytestmark = pytest.mark.cdk

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_lambdas.py"
_spec = importlib.util.spec_from_file_location("build_lambdas", _SCRIPT)
build_lambdas = importlib.util.module_from_spec(_spec)
sys.modules["build_lambdas"] = build_lambdas
_spec.loader.exec_module(build_lambdas)


def test_each_stage_ships_only_what_it_imports():
    assert FUNCTION_REQUIREMENTS["extract"] == ["psycopg2-binary", "aws-lambda-powertools"]
    for stage in ("transform", "load"):
        assert {"polars", "polars-runtime-32", "psycopg2-binary", "aws-lambda-powertools"} == set(
            FUNCTION_REQUIREMENTS[stage]
        )
    for requirements in FUNCTION_REQUIREMENTS.values():
        assert not {"pyarrow", "boto3", "botocore"} & set(requirements)


def test_wheels_match_the_function_architecture():
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[ARCHITECTURE]
    assert all(platform.endswith(machine) for platform in PIP_PLATFORMS)
    assert any(platform.startswith("manylinux_2_28") for platform in PIP_PLATFORMS)


def _fake_function(root: Path, size: int, extra: str | None = None) -> Path:
    for package in ("totes", "lambdas"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "blob.bin").write_bytes(b"\0" * size)
    if extra:
        (root / extra).mkdir()
    return root


def test_check_passes_a_small_folder(tmp_path, capsys):
    assert build_lambdas.check("extract", _fake_function(tmp_path / "f", 1000)) == []
    assert "OK" in capsys.readouterr().out


def test_check_fails_a_folder_over_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(build_lambdas, "LAMBDA_UNZIPPED_LIMIT", 500)
    problems = build_lambdas.check("load", _fake_function(tmp_path / "f", 1000))
    assert problems
    assert "over Lambda's" in problems[0]


def test_check_fails_a_folder_shipping_a_forbidden_package(tmp_path):
    problems = build_lambdas.check("load", _fake_function(tmp_path / "f", 10, extra="pyarrow"))
    assert problems == ["load: ships pyarrow, which must not be in the package"]


def test_check_fails_without_our_code(tmp_path):
    (tmp_path / "f").mkdir()
    assert "our package totes/ is missing" in " ".join(build_lambdas.check("x", tmp_path / "f"))


def test_strip_removes_byte_code_and_scripts(tmp_path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-314.pyc").write_bytes(b"x")
    (tmp_path / "pkg" / "m.py").write_text("")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_text("")
    build_lambdas.strip(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "pkg",
        "pkg/m.py",
    ]


@pytest.mark.skipif(
    not all((LAMBDA_BUILD_DIR / name).is_dir() for name in FUNCTION_REQUIREMENTS),
    reason="build/lambda not built (make layer-setup)",
)
@pytest.mark.parametrize("name", list(FUNCTION_REQUIREMENTS))
def test_real_build_is_under_the_lambda_limit(name):
    assert build_lambdas.check(name, LAMBDA_BUILD_DIR / name) == []
