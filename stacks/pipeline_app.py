"""Assemble the app: seven stacks, one per concern, and cdk-nag on every synth.

    storage        the ingestion and processed lakes (and their access log bucket)
    alerts         the SNS topic and the email subscription
    functions      extract, transform, load (Lambda) with least-privilege roles
    orchestration  the state machine from statemachine/pipeline.asl.json, and its schedule
    monitoring     alarms to the topic, and the dashboard
    audit          the scheduled comparison of the warehouse with ToteSys, and its alarms
    analytics      Glue tables over the processed lake, the Athena workgroup (analysts)

The stacks are environment-agnostic (no account or region at synth): synthesis needs no
AWS credentials, and ``cdk deploy`` targets whatever account the caller's credentials are
for. The stacks find each other by name (stacks/names.py); deploy with ``--all``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import App, Stage, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.alerts_stack import AlertsStack
from stacks.analytics_stack import AnalyticsStack
from stacks.audit_stack import AuditStack
from stacks.config import DeployConfig
from stacks.functions_stack import FunctionsStack
from stacks.monitoring_stack import MonitoringStack
from stacks.orchestration_stack import OrchestrationStack
from stacks.storage_stack import StorageStack
from totes.contract import PROJECT

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def cdk_json_context() -> dict:
    """The context in cdk.json (settings and feature flags).

    The CDK CLI passes it to the app itself; ``App(context=cdk_json_context())`` gives a
    plain ``python app.py`` or a test the same values (the CLI's, when present, win).
    """
    return json.loads(CDK_JSON.read_text())["context"]


@dataclass(frozen=True)
class PipelineStacks:
    storage: StorageStack
    alerts: AlertsStack
    functions: FunctionsStack
    orchestration: OrchestrationStack
    monitoring: MonitoringStack
    audit: AuditStack
    analytics: AnalyticsStack

    def all(self) -> list:
        return [
            self.storage,
            self.alerts,
            self.functions,
            self.orchestration,
            self.monitoring,
            self.audit,
            self.analytics,
        ]


def build_app(app: App | Stage, code_dirs: Mapping[str, Path]) -> PipelineStacks:
    """Add the pipeline's stacks to ``app``, reading settings from its context.

    ``code_dirs`` maps each function (extract, transform, load, audit) to the folder it ships:
    ``build/lambda/<fn>`` for real, small stand-ins in tests.
    """
    config = DeployConfig.from_context(app.node)
    # Acknowledgments are also written into each resource's Metadata (cdk_nag), so the
    # reasons travel with the template.
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True)
    )

    storage = StorageStack(
        app, config.names.stack("Storage"), config=config,
        description="Terrific Totes: ingestion and processed data lakes",
    )  # fmt: skip
    alerts = AlertsStack(
        app, config.names.stack("Alerts"), config=config,
        description="Terrific Totes: alert topic and email subscription",
    )  # fmt: skip
    functions = FunctionsStack(
        app, config.names.stack("Functions"), config=config,
        code_dirs=code_dirs,
        description="Terrific Totes: extract, transform and load Lambdas",
    )  # fmt: skip
    orchestration = OrchestrationStack(
        app, config.names.stack("Orchestration"), config=config,
        description="Terrific Totes: pipeline state machine and its schedule",
    )  # fmt: skip
    monitoring = MonitoringStack(
        app, config.names.stack("Monitoring"), config=config,
        description="Terrific Totes: alarms and dashboard",
    )  # fmt: skip
    audit = AuditStack(
        app, config.names.stack("Audit"), config=config,
        code_dir=code_dirs["audit"],
        description="Terrific Totes: scheduled audit of the warehouse against ToteSys",
    )  # fmt: skip
    # The stacks refer to each other by name (stacks/names.py), not by export: the deploy
    # order is declared here instead.
    functions.add_stack_dependency(storage)
    orchestration.add_stack_dependency(functions)
    orchestration.add_stack_dependency(alerts)
    analytics = AnalyticsStack(
        app, config.names.stack("Analytics"), config=config,
        description="Terrific Totes: the processed lake in Athena (Glue tables, workgroup)",
    )  # fmt: skip
    monitoring.add_stack_dependency(orchestration)
    analytics.add_stack_dependency(storage)
    audit.add_stack_dependency(alerts)
    stacks = PipelineStacks(storage, alerts, functions, orchestration, monitoring, audit, analytics)
    for stack in stacks.all():
        # Cost allocation tags (activate them once in the Billing console).
        Tags.of(stack).add("project", PROJECT)
        Tags.of(stack).add("environment", config.environment)
        Tags.of(stack).add("owner", config.owner)
    return stacks
