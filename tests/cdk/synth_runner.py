"""Synthesise the app into a folder, as ``cdk synth`` would, for the CDK tests.

    python tests/cdk/synth_runner.py OUTDIR '{"totes:alertEmail": "..."}'

Run in a subprocess by ``conftest.py`` with no AWS credentials and no Docker in its
environment, so a passing synth proves neither is needed. The Lambda folders are tiny
stand-ins (a real build downloads ~400 MB); cdk-nag runs exactly as in ``make synth`` and
any unacknowledged finding makes this exit non-zero.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aws_cdk import App  # noqa: E402

from stacks.lambda_packaging import FUNCTION_REQUIREMENTS  # noqa: E402
from stacks.pipeline_app import build_app, cdk_json_context  # noqa: E402


def stand_in_code(root: Path) -> dict[str, Path]:
    """One folder per function holding just a handler module."""
    dirs = {}
    for name in FUNCTION_REQUIREMENTS:
        folder = root / name / "lambdas"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text("")
        (folder / f"{name}.py").write_text("def handler(event, context):\n    return {}\n")
        dirs[name] = root / name
    return dirs


def main(outdir: str, context_json: str) -> None:
    out = Path(outdir)
    app = App(context={**cdk_json_context(), **json.loads(context_json)}, outdir=str(out))
    build_app(app, stand_in_code(out.parent / f"{out.name}-code"))
    app.synth()


if __name__ == "__main__":
    main(*sys.argv[1:3])
