"""Names shared by the CDK app, the state machine definition and the local runner.

The deployed stacks and the laptop run build the same resources (three functions, an alert
topic, a state machine) from the same definition file, so every name they share is spelled
here once: stages and their states, physical names, metric names, and the definition with
its ``${Placeholder}`` substitutions. Pure Python: the Lambdas import it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

PROJECT = "terrific-totes"
# The Lambda runtime's Python: the newest the development machines and CI can install (and
# so run `make test` on: the Makefile's PYTHON), not the newest Lambda offers: what the
# tests ran on is what runs. cdk-nag's AwsSolutions-L1 (latest runtime) is acknowledged
# for it (stacks/nag_acknowledgments.py). The local runner's functions declare it too.
PYTHON_VERSION = "3.13"

# The pipeline's stages in execution order; each is one Lambda function and one Task state.
STAGES: tuple[str, ...] = ("extract", "transform", "load")
STAGE_STATES: dict[str, str] = {"extract": "Extract", "transform": "Transform", "load": "Load"}

# CloudWatch metrics the handlers publish (Embedded Metric Format) and the alarms watch.
METRICS_NAMESPACE = "TerrificTotes"
ROW_METRICS: dict[str, str] = {
    "extract": "RowsExtracted",
    "transform": "RowsTransformed",
    "load": "RowsLoaded",
}  # dimension: table
DURATION_METRIC = "RunDurationSeconds"  # dimension: stage
# The scheduled audit (lambdas/audit.py): differences between the warehouse and ToteSys per
# table, and their total under table=AUDIT_TOTAL (what the alarm watches).
AUDIT_FUNCTION = "audit"
DIFFERENCES_METRIC = "WarehouseDifferences"  # dimension: table
AUDIT_TOTAL = "all"

# The definition file (statemachine/pipeline.asl.json, installed as totes.statemachine).
DEFINITION_PACKAGE = "totes.statemachine"
DEFINITION_FILE_NAME = "pipeline.asl.json"
PLACEHOLDERS = frozenset(
    {
        "ExtractFunctionArn",
        "TransformFunctionArn",
        "LoadFunctionArn",
        "AlertTopicArn",
        "RetryIntervalSeconds",
        "ExecutionTimeoutSeconds",
        "Region",
        "RunbookUrl",
    }
)
# Where the alert emails point for "what to do" (the deployment may set its own URL).
DEFAULT_RUNBOOK_URL = "docs/runbooks.md"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


class DefinitionError(ValueError):
    """The definition file and the values given for its placeholders do not match."""


@dataclass(frozen=True)
class Names:
    """Physical names of one deployment (``environment``: dev, prod, local ...)."""

    environment: str

    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.environment}"

    def function(self, stage: str) -> str:
        if stage not in STAGES:
            raise KeyError(f"{stage!r} is not a pipeline stage {STAGES}")
        return f"{self.prefix}-{stage}"

    @property
    def functions(self) -> dict[str, str]:
        return {stage: self.function(stage) for stage in STAGES}

    @property
    def alert_topic(self) -> str:
        return f"{self.prefix}-alerts"

    @property
    def state_machine(self) -> str:
        return f"{self.prefix}-pipeline"

    def alarm(self, name: str) -> str:
        """``terrific-totes-<env>.<Name>``: the dot cannot occur in an environment name, so
        one environment's alarm names never match another's prefix."""
        return f"{self.prefix}.{name}"

    def bucket_name(self, lake: str, account: str, region: str) -> str:
        """``terrific-totes-<env>-<lake>-<account>-<region>``: unique, readable in the console."""
        return f"{self.prefix}-{lake}-{account}-{region}"

    def stage_of(self, function_name_or_arn: str) -> str:
        """The stage whose function this is (a name, or an ARN with optional qualifier)."""
        name = function_name_or_arn.rsplit(":function:", 1)[-1].split(":", 1)[0]
        for stage in STAGES:
            if name == self.function(stage):
                return stage
        raise KeyError(f"{function_name_or_arn!r} is not a function of {self.prefix}")


def definition_path() -> str:
    """The definition file's path (CDK uploads it as an asset)."""
    return str(resources.files(DEFINITION_PACKAGE).joinpath(DEFINITION_FILE_NAME))


def read_definition() -> str:
    return resources.files(DEFINITION_PACKAGE).joinpath(DEFINITION_FILE_NAME).read_text("utf-8")


def placeholders_in(definition: str) -> set[str]:
    return set(_PLACEHOLDER.findall(definition))


def check_substitutions(definition: str, values: Mapping[str, object]) -> None:
    """Every placeholder in the file is given a value, and every value is used."""
    found = placeholders_in(definition)
    missing, unused = found - set(values), set(values) - found
    if missing or unused:
        raise DefinitionError(
            f"{DEFINITION_FILE_NAME} placeholders do not match: missing {sorted(missing)}, "
            f"unused {sorted(unused)}"
        )


def substitute(definition: str, values: Mapping[str, object]) -> str:
    """Fill ``${Name}`` placeholders the way CDK's ``definition_substitutions`` does."""
    check_substitutions(definition, values)
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), definition)


@dataclass(frozen=True)
class FunctionLimits:
    """A stage's deployed Lambda memory and time limit: the AWS app sets them, the local
    runner says when a call would have passed them (it runs handlers in-process, unbounded)."""

    memory_mb: int
    timeout_seconds: int


FUNCTION_LIMITS: dict[str, FunctionLimits] = {
    "extract": FunctionLimits(512, 5 * 60),
    "transform": FunctionLimits(2048, 10 * 60),
    "load": FunctionLimits(1024, 10 * 60),
}
