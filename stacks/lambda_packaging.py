"""What each Lambda function ships, and for which runtime: read by the build script
(``scripts/build_lambdas.py``) and by the functions stack, so they cannot disagree.

No aws_cdk import here: the build script must not need the CDK's Node runtime.
"""

from __future__ import annotations

import ast
from pathlib import Path

from totes.contract import PYTHON_VERSION as PYTHON_VERSION  # the runtime, one place

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_BUILD_DIR = ROOT / "build" / "lambda"

# On Graviton: ~20% cheaper per GB-second than x86_64, and every wheel we need is published
# for manylinux aarch64.
ARCHITECTURE = "arm64"
# Both tags: with only manylinux2014, pip silently falls back to old releases of packages
# that now publish manylinux_2_28 wheels only.
PIP_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
# The same target for uv, which resolves the lock files (scripts/lock_requirements.py).
UV_PLATFORM = "aarch64-manylinux_2_28"

# The exact wheels (with hashes) each function ships, and the dev environment's pins.
REQUIREMENTS_DIR = ROOT / "requirements"

# Our own top-level packages; each function ships only the modules its handler imports.
SOURCE_PACKAGES = ("totes", "lambdas")

# Only what each stage imports. boto3 is in the runtime already; pyarrow is never needed
# (polars reads CSV and reads/writes Parquet by itself) and would not fit next to polars.
FUNCTION_REQUIREMENTS: dict[str, list[str]] = {
    "extract": ["psycopg2-binary", "aws-lambda-powertools"],
    "transform": ["polars", "polars-runtime-32", "aws-lambda-powertools"],
    "load": [
        "polars",
        "polars-runtime-32",
        "nanoarrow",
        "psycopg2-binary",
        "aws-lambda-powertools",
    ],
    # The scheduled audit (not a stage): SQL on both databases, no polars.
    "audit": ["psycopg2-binary", "aws-lambda-powertools"],
}


# Files our modules read at run time, shipped with the module that reads them.
DATA_FILES: dict[str, tuple[str, ...]] = {
    "totes/pipeline/tls.py": ("totes/pipeline/certs/rds-ca-bundle.pem",),
}


def lambda_lock(function: str) -> Path:
    """The lock file of one function's wheels."""
    return REQUIREMENTS_DIR / f"lambda-{function}.txt"


def dev_lock() -> Path:
    """The development environment's constraints (what the tests run on)."""
    return REQUIREMENTS_DIR / "dev.txt"


def _module_file(module: str) -> Path | None:
    """The source file of one of our modules (a package's ``__init__.py``), if it is ours."""
    if module.split(".", 1)[0] not in SOURCE_PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names (and submodules
    named by ``from package import module``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def function_sources(stage: str) -> list[Path]:
    """Our source files the stage's handler needs: the closure of its imports, with the
    ``__init__.py`` of every package on the way. Nothing else of ours ships."""
    files: set[Path] = set()
    queue = [f"lambdas.{stage}"]
    while queue:
        module = queue.pop()
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            path = _module_file(".".join(parts[:depth]))
            if path is not None and path not in files:
                files.add(path)
                queue.extend(_imported_modules(path))
    return sorted(files)


def function_data_files(stage: str) -> list[Path]:
    """The data files the stage's modules read (``DATA_FILES``), shipped beside them."""
    shipped = {path.relative_to(ROOT).as_posix() for path in function_sources(stage)}
    return sorted(
        ROOT / data for module, files in DATA_FILES.items() if module in shipped for data in files
    )
