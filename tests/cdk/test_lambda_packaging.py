"""The Lambda build: only the wheels each stage needs, and every folder under the limit."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from stacks.lambda_packaging import (
    ARCHITECTURE,
    FUNCTION_REQUIREMENTS,
    LAMBDA_BUILD_DIR,
    PIP_PLATFORMS,
    PYTHON_VERSION,
    UV_PLATFORM,
    dev_lock,
    function_data_files,
    function_sources,
    lambda_lock,
)
from totes.pipeline.tls import RDS_CA_BUNDLE

ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = ROOT / "scripts" / "build_lambdas.py"
_spec = importlib.util.spec_from_file_location("build_lambdas", _SCRIPT)
build_lambdas = importlib.util.module_from_spec(_spec)
sys.modules["build_lambdas"] = build_lambdas
_spec.loader.exec_module(build_lambdas)


def test_each_stage_ships_only_what_it_imports():
    assert FUNCTION_REQUIREMENTS["extract"] == ["psycopg2-binary", "aws-lambda-powertools"]
    assert set(FUNCTION_REQUIREMENTS["transform"]) == {
        "polars",
        "polars-runtime-32",
        "aws-lambda-powertools",
    }
    assert set(FUNCTION_REQUIREMENTS["load"]) == {
        "polars",
        "polars-runtime-32",
        "nanoarrow",
        "psycopg2-binary",
        "aws-lambda-powertools",
    }
    assert FUNCTION_REQUIREMENTS["audit"] == ["psycopg2-binary", "aws-lambda-powertools"]
    for requirements in FUNCTION_REQUIREMENTS.values():
        assert not {"pyarrow", "boto3", "botocore"} & set(requirements)


@pytest.mark.parametrize("stage", list(FUNCTION_REQUIREMENTS))
def test_a_function_ships_none_of_the_simulator_or_the_laptop_runtime(stage):
    shipped = {path.relative_to(ROOT).as_posix() for path in function_sources(stage)}
    assert f"lambdas/{stage}.py" in shipped and f"totes/pipeline/{stage}.py" in shipped
    assert not {p for p in shipped if p.startswith(("totes/totesys/", "totes/local/"))}
    others = {s for s in FUNCTION_REQUIREMENTS if s != stage}
    assert not {f"lambdas/{other}.py" for other in others} & shipped


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


@pytest.mark.parametrize("name", list(FUNCTION_REQUIREMENTS))
def test_real_build_is_under_the_lambda_limit(name):
    # `make test` builds it first (make layer-setup); a missing build is a failure, not a skip.
    assert (LAMBDA_BUILD_DIR / name).is_dir(), "build/lambda missing: run `make layer-setup`"
    assert build_lambdas.check(name, LAMBDA_BUILD_DIR / name) == []


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install, dependencies included (no extras)."""
    distributions: set[str] = set()
    queue = list(requirements)
    while queue:
        name = _canonical(queue.pop())
        if name in distributions:
            continue
        distributions.add(name)
        for requirement in metadata.requires(name) or []:
            if "extra ==" not in requirement:
                queue.append(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0))
    return distributions


def stand_in_package(root: Path, stage: str, requirements: list[str]) -> Path:
    """A folder laid out like the function's package, from this venv's installed files
    (symlinks): the modules of ours it ships, the wheels and their dependencies, plus boto3
    (in the runtime)."""
    root.mkdir()
    for name in _closure([*requirements, "boto3"]):
        distribution = metadata.distribution(name)
        tops = {file.parts[0] for file in distribution.files or [] if file.parts[0] != ".."}
        for top in tops:
            source = Path(distribution.locate_file(top))
            if source.exists() and not (root / top).exists():
                (root / top).symlink_to(source)
    for source in function_sources(stage):
        target = root / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)
    return root


@pytest.mark.parametrize("stage", list(FUNCTION_REQUIREMENTS))
def test_handler_imports_only_what_its_package_ships(stage, tmp_path):
    """Import the handler in a fresh interpreter that sees the stdlib and the stand-in
    package only: nothing it needs may be missing from what ships."""
    package = stand_in_package(tmp_path / stage, stage, FUNCTION_REQUIREMENTS[stage])
    code = f"import sys; sys.path[:0] = [{str(package)!r}]\nimport lambdas.{stage}\n"
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],  # -S: no site-packages
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _locked(lock: Path) -> dict[str, str]:
    """name -> version of every package a lock file pins."""
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", lock.read_text(), re.MULTILINE)
    return {_canonical(name): version for name, version in pins}


@pytest.mark.parametrize("stage", list(FUNCTION_REQUIREMENTS))
def test_each_function_ships_a_hashed_lock_for_its_runtime(stage):
    lock = lambda_lock(stage)
    text = lock.read_text()
    assert f"CPython {PYTHON_VERSION} on {UV_PLATFORM}" in text
    pins = _locked(lock)
    assert {_canonical(r) for r in FUNCTION_REQUIREMENTS[stage]} <= set(pins)
    assert text.count("==") == len(pins) and text.count("--hash=sha256:") >= len(pins)


def test_the_tests_run_on_the_versions_the_lambdas_ship():
    shipped = {}
    for stage in FUNCTION_REQUIREMENTS:
        shipped |= _locked(lambda_lock(stage))
    assert {name: metadata.version(name) for name in shipped} == shipped
    assert {name: _locked(dev_lock())[name] for name in shipped} == shipped


@pytest.mark.parametrize("stage", list(FUNCTION_REQUIREMENTS))
def test_the_real_build_holds_exactly_the_locked_wheels(stage):
    built = {
        _canonical(path.name.split("-")[0]): path.name.removesuffix(".dist-info").split("-")[1]
        for path in (LAMBDA_BUILD_DIR / stage).glob("*.dist-info")
    }
    assert built == _locked(lambda_lock(stage))


@pytest.mark.parametrize("stage", ["extract", "load"])
def test_the_database_stages_ship_the_rds_ca_bundle(stage):
    assert RDS_CA_BUNDLE in function_data_files(stage)
    shipped = LAMBDA_BUILD_DIR / stage / RDS_CA_BUNDLE.relative_to(ROOT)
    assert shipped.read_bytes() == RDS_CA_BUNDLE.read_bytes()
