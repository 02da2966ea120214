#!/usr/bin/env python3
"""The CDK app: ``npx cdk synth`` / ``make synth`` (no AWS account, no Docker needed).

Settings come from the context in cdk.json (``totes:*`` keys, see docs/deploy.md). The
Lambda folders are prebuilt by ``scripts/build_lambdas.py`` (``make layer-setup``); when
one is missing, this builds them first.
"""

from __future__ import annotations

import subprocess
import sys

from aws_cdk import App

from stacks.lambda_packaging import FUNCTION_REQUIREMENTS, LAMBDA_BUILD_DIR, ROOT
from stacks.pipeline_app import build_app, cdk_json_context


def lambda_code_dirs() -> dict:
    """``build/lambda/<fn>`` for each function, building them if any is missing."""
    dirs = {name: LAMBDA_BUILD_DIR / name for name in FUNCTION_REQUIREMENTS}
    if not all((path / "lambdas").is_dir() for path in dirs.values()):
        print("Lambda folders missing: running scripts/build_lambdas.py", file=sys.stderr)
        subprocess.run(  # noqa: S603 (fixed arguments, our own script)
            [sys.executable, str(ROOT / "scripts" / "build_lambdas.py")],
            check=True,
            stdout=sys.stderr,  # stdout is the CDK's
        )
    return dirs


app = App(context=cdk_json_context())
build_app(app, lambda_code_dirs())
app.synth()
