"""Build one deployment folder per Lambda function: our code plus only the wheels it needs.

    python scripts/build_lambdas.py            # build/lambda/{extract,transform,load}
    python scripts/build_lambdas.py --check    # only measure what is there

Why one folder per function: polars + pyarrow + psycopg2 do not fit in one 250 MiB
(unzipped) Lambda package, and each stage needs a different subset. Each folder is
``Code.from_asset``-ed by the CDK app as it is: no Docker, no bundling at synth.

The wheels are the Linux builds for the Lambda runtime and architecture the CDK app
declares (``stacks/lambda_packaging.py``), exactly those of the function's lock file
(``requirements/lambda-<function>.txt``: versions and hashes, from ``make lock``); the
development environment is constrained to the same versions, so what the tests ran is
what ships. They are installed once per lock (a stamp next to the folder records it); our
own modules are copied afresh on every run: only those the handler imports (the
simulator, the laptop runtime and moto never ship), and the data files they read.

Exits non-zero when a folder is over Lambda's unzipped limit (262,144,000 bytes), or when
it contains a package that must not ship (boto3 is in the runtime; pyarrow is too big).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stacks.lambda_packaging import (  # noqa: E402 (needs the repository on sys.path)
    FUNCTION_REQUIREMENTS,
    LAMBDA_BUILD_DIR,
    PIP_PLATFORMS,
    PYTHON_VERSION,
    SOURCE_PACKAGES,
    function_data_files,
    function_sources,
    lambda_lock,
)

LAMBDA_UNZIPPED_LIMIT = 262_144_000
FORBIDDEN = ("boto3", "botocore", "pyarrow")
# Never needed at run time: byte code is rebuilt by the runtime, and pip's console scripts
# (bin/) are not runnable in Lambda anyway.
_JUNK_DIRS = {"__pycache__", "bin"}
_JUNK_SUFFIXES = {".pyc", ".pyo"}


def folder_size(path: Path) -> int:
    """Bytes of every regular file under ``path``: what Lambda counts as unzipped size."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _stamp(name: str) -> Path:
    return LAMBDA_BUILD_DIR / f".{name}.requirements.json"


def install_wheels(name: str, target: Path, lock: Path) -> None:
    """pip-install exactly the locked Linux wheels into ``target`` unless already there."""
    if not lock.is_file():
        raise SystemExit(f"{lock} is missing: run `make lock`")
    wanted = {
        "python": PYTHON_VERSION,
        "platforms": list(PIP_PLATFORMS),
        "lock": hashlib.sha256(lock.read_bytes()).hexdigest(),
    }
    stamp = _stamp(name)
    if target.is_dir() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        print(f"[{name}] wheels up to date: {lock.relative_to(ROOT)}")
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-compile", "--only-binary=:all:", "--implementation", "cp",
        "--python-version", PYTHON_VERSION,
        *(arg for platform in PIP_PLATFORMS for arg in ("--platform", platform)),
        # The lock holds every package with its hashes: nothing is resolved here.
        "--require-hashes", "--no-deps", "--target", str(target), "-r", str(lock),
    ]  # fmt: skip
    print(f"[{name}] installing {lock.relative_to(ROOT)}")
    subprocess.run(command, check=True)  # noqa: S603 (our own fixed argument list)
    stamp.write_text(json.dumps(wanted, indent=2))


def copy_sources(name: str, target: Path) -> None:
    """Replace our own code in ``target`` with fresh copies of the modules the function's
    handler imports (``function_sources``), and nothing else of ours."""
    for package in SOURCE_PACKAGES:
        shutil.rmtree(target / package, ignore_errors=True)
    for source in [*function_sources(name), *function_data_files(name)]:
        destination = target / source.relative_to(ROOT)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def strip(target: Path) -> None:
    """Remove what the runtime never reads."""
    for path in sorted(target.rglob("*"), reverse=True):
        if path.is_dir() and path.name in _JUNK_DIRS:
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in _JUNK_SUFFIXES:
            path.unlink()


def check(name: str, target: Path) -> list[str]:
    """Print the size of one function's folder; return the problems found."""
    problems = []
    if not target.is_dir():
        return [f"{name}: {target} is missing (run `make layer-setup`)"]
    size = folder_size(target)
    verdict = "OK" if size <= LAMBDA_UNZIPPED_LIMIT else "OVER THE LIMIT"
    print(
        f"{name:<10} {size:>13,} bytes unzipped ({size / 2**20:6.1f} MiB, "
        f"{size / LAMBDA_UNZIPPED_LIMIT:4.0%} of {LAMBDA_UNZIPPED_LIMIT:,})  {verdict}"
    )
    if size > LAMBDA_UNZIPPED_LIMIT:
        problems.append(f"{name}: {size:,} bytes is over Lambda's {LAMBDA_UNZIPPED_LIMIT:,}")
    for package in FORBIDDEN:
        if (target / package).exists():
            problems.append(f"{name}: ships {package}, which must not be in the package")
    for package in SOURCE_PACKAGES:
        if not (target / package / "__init__.py").is_file():
            problems.append(f"{name}: our package {package}/ is missing")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only measure existing folders")
    parser.add_argument("functions", nargs="*", default=list(FUNCTION_REQUIREMENTS))
    args = parser.parse_args(argv)
    unknown = set(args.functions) - set(FUNCTION_REQUIREMENTS)
    if unknown:
        parser.error(f"unknown function(s): {', '.join(sorted(unknown))}")

    problems: list[str] = []
    for name in args.functions:
        target = LAMBDA_BUILD_DIR / name
        if not args.check:
            install_wheels(name, target, lambda_lock(name))
            copy_sources(name, target)
            strip(target)
        problems += check(name, target)
    print(f"(wheels for CPython {PYTHON_VERSION} on {', '.join(PIP_PLATFORMS)})")
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
