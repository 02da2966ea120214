"""Synthesise the CDK app once per session (three times: public databases, in a VPC, and a
second environment), in subprocesses with no AWS credentials and no Docker, in parallel;
tests read the templates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

RUNNER = Path(__file__).with_name("synth_runner.py")
ALERT_EMAIL = "data-oncall@terrific-totes.example"
CONTEXT = {"totes:alertEmail": ALERT_EMAIL}
VPC_CONTEXT = {
    **CONTEXT,
    "totes:vpcId": "vpc-0abc1234def567890",
    "totes:subnetIds": "subnet-0aaa1111bbb22222a, subnet-0ccc3333ddd44444b",
    "totes:securityGroupId": "sg-0eee5555fff66666c",
    "totes:removalPolicy": "destroy",
    "totes:scheduleEnabled": "false",
}
# A second deployment beside the first, as `cdk synth -c totes:environment=prod ...` makes it.
PROD_CONTEXT = {
    **CONTEXT,
    "totes:environment": "prod",
    "totes:owner": "finance-analytics",
    "totes:runbookUrl": "https://git.example.com/totes/blob/main/docs/runbooks.md",
}


def isolated_env(home: Path) -> dict[str, str]:
    """This process's environment minus every AWS setting, with Docker made unusable."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "CDK_DEFAULT_", "CDK_CONTEXT_JSON", "CDK_OUTDIR"))
    }
    env.update(
        HOME=str(home),  # no ~/.aws either
        CDK_DOCKER=str(home / "no-docker-here"),  # any bundling would fail loudly
        AWS_EC2_METADATA_DISABLED="true",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        CDK_DISABLE_CLI_TELEMETRY="true",
    )
    return env


@dataclass
class Assembly:
    """One synthesised cloud assembly (cdk.out folder)."""

    outdir: Path
    environment: str = "dev"

    def template(self, stack: str) -> dict:
        name = f"TerrificTotes-{self.environment}-{stack}"
        return json.loads((self.outdir / f"{name}.template.json").read_text())


@dataclass
class Synths:
    default: Assembly
    vpc: Assembly
    prod: Assembly


@pytest.fixture(scope="session")
def synths(tmp_path_factory: pytest.TempPathFactory) -> Synths:
    root = tmp_path_factory.mktemp("cdk")
    home = root / "home"
    home.mkdir()
    runs = {}
    for label, context in (("default", CONTEXT), ("vpc", VPC_CONTEXT), ("prod", PROD_CONTEXT)):
        outdir = root / f"{label}.out"
        runs[label] = (
            outdir,
            subprocess.Popen(
                [sys.executable, str(RUNNER), str(outdir), json.dumps(context)],
                env=isolated_env(home),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
    for label, (_, process) in runs.items():
        output, _ = process.communicate(timeout=300)
        if process.returncode != 0:
            pytest.fail(f"synth ({label}) failed:\n{output[-6000:]}")
    return Synths(
        default=Assembly(runs["default"][0]),
        vpc=Assembly(runs["vpc"][0]),
        prod=Assembly(runs["prod"][0], environment="prod"),
    )


@pytest.fixture(scope="session")
def assembly(synths: Synths) -> Assembly:
    return synths.default
