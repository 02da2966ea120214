"""Physical names of what one stack makes and another uses, per deployment environment.

The stacks find each other's resources by these names rather than through CloudFormation
exports. Exports pin a producer (a bucket or function cannot be replaced while another
stack imports it) and turn ARNs into opaque ``Fn::ImportValue`` tokens, which makes IAM
policies and cdk-nag findings unreadable. Names keep every stack readable, deployable and
testable on its own; ``build_app`` declares the deploy order explicitly instead.

Every name carries the environment (``totes:environment``: dev, prod, ...), so several
deployments can live in one account and region. The names the state machine definition
and the local runner share come from ``totes.contract``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws

from totes.contract import AUDIT_FUNCTION, Names


@dataclass(frozen=True)
class DeploymentNames(Names):
    """``Names`` plus what only the AWS deployment has: buckets, the dashboard, the audit,
    the Glue database, the Athena workgroup and the analysts' policy."""

    def bucket(self, lake: str) -> str:
        """This deployment's bucket for ``lake``, in the account and region deployed to."""
        return self.bucket_name(lake, Aws.ACCOUNT_ID, Aws.REGION)

    @property
    def ingestion_bucket(self) -> str:
        return self.bucket("ingestion")

    @property
    def processed_bucket(self) -> str:
        return self.bucket("processed")

    @property
    def access_logs_bucket(self) -> str:
        return self.bucket("access-logs")

    @property
    def audit_function(self) -> str:
        """The scheduled audit's Lambda (not a pipeline stage: the state machine never
        calls it)."""
        return f"{self.prefix}-{AUDIT_FUNCTION}"

    @property
    def athena_results_bucket(self) -> str:
        return self.bucket("athena")

    @property
    def glue_database(self) -> str:
        """``terrific_totes_<env>``: Athena needs no quoting for underscores (it does for -)."""
        return self.prefix.replace("-", "_")

    @property
    def athena_workgroup(self) -> str:
        return f"{self.prefix}-analysts"

    @property
    def analyst_policy(self) -> str:
        return f"{self.prefix}-analyst-query"

    @property
    def dashboard(self) -> str:
        return f"TerrificTotes-{self.environment}-Pipeline"

    @property
    def state_machine_log_group(self) -> str:
        # Under /aws/vendedlogs/: keeps the account's CloudWatch Logs resource policy small.
        return f"/aws/vendedlogs/states/{self.state_machine}"

    @property
    def alarm_arn_pattern(self) -> str:
        """Every alarm of this deployment, as ``aws:SourceArn`` sees it."""
        return (
            f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:{self.alarm('*')}"
        )

    @property
    def rule_arn_pattern(self) -> str:
        """Every EventBridge rule of this deployment (named like its alarms)."""
        return f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/{self.alarm('*')}"

    def stack(self, concern: str) -> str:
        """The CloudFormation stack name of one concern (Storage, Alerts, ...)."""
        return f"TerrificTotes-{self.environment}-{concern}"
