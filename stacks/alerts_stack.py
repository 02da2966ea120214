"""The alert topic: the state machine's failure branch and every alarm publish here, and
the on-call email address (context ``totes:alertEmail``) is subscribed to it.

A topic policy replaces SNS's default one, so everything that publishes without IAM of its
own must be allowed here: CloudWatch alarms publish as the service ``cloudwatch.amazonaws.com``,
allowed only for this account's alarms of this deployment (``aws:SourceAccount``, and
``aws:SourceArn`` against the alarm names of stacks/names.py). The state machine publishes
with its role's IAM policy (same account), so it needs no statement here. Publishing
without TLS is denied to everyone.
"""

from __future__ import annotations

from aws_cdk import Annotations, Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.config import PREFIX, DeployConfig
from stacks.nag_acknowledgments import Reason, acknowledge


class AlertsStack(Stack):
    """One SNS topic, TLS-only, with the email subscription."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, **kwargs):
        super().__init__(scope, construct_id, **kwargs)
        self.topic = sns.Topic(
            self,
            "AlertTopic",
            topic_name=config.names.alert_topic,
            display_name="Terrific Totes pipeline alerts",
            enforce_ssl=True,
        )
        acknowledge(self.topic, "AwsSolutions-SNS2", Reason.ALERT_TOPIC_NOT_KMS)
        _admit(
            self.topic,
            "CloudWatchAlarmsOfThisDeployment",
            "cloudwatch",
            config.names.alarm_arn_pattern,
        )
        # The monitoring stack's rule for runs that failed without sending their alert.
        _admit(
            self.topic, "EventBridgeRulesOfThisDeployment", "events", config.names.rule_arn_pattern
        )
        if not config.runbook_url.startswith(("https://", "http://")):
            Annotations.of(self).add_warning_v2(
                "totes:runbook-not-a-web-address",
                f"The alerts link the runbook as {config.runbook_url!r}, which an email reader "
                f"cannot open: set context {PREFIX}runbookUrl to the web address of "
                "docs/runbooks.md (say, the file on your Git host).",
            )
        if config.alert_email:
            # AWS emails a confirmation link first; nothing is delivered until it is clicked.
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alert_email))
        else:
            Annotations.of(self).add_warning_v2(
                "totes:no-alert-email",
                f"No alert email: set context {PREFIX}alertEmail before deploying, or failures "
                "and alarms will reach nobody.",
            )


def _admit(topic: sns.Topic, sid: str, service: str, source_arns: str) -> None:
    """Let ``service`` publish to the topic for this account's sources matching
    ``source_arns`` (this deployment's alarms or rules, by name), and nothing else."""
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            principals=[iam.ServicePrincipal(f"{service}.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions={
                "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": source_arns},
            },
        )
    )
