"""An alarm that emails the alert topic, as every stack makes them: named for the deployment
(the topic's policy lets CloudWatch publish for exactly those names), its description
ending with the address of its section of docs/runbooks.md."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from constructs import Construct

from stacks.config import DeployConfig

ALARM_PERIOD = Duration.minutes(5)


def runbook_anchor(alarm_id: str) -> str:
    """The docs/runbooks.md heading of an alarm: ``## Alarm: ExtractThrottles`` for every
    function's throttles shares ``## Alarm: <Stage>Throttles``."""
    if alarm_id.endswith("Throttles"):
        alarm_id = "StageThrottles"
    return f"alarm-{alarm_id.lower()}"


def alert_alarm(
    scope: Construct,
    config: DeployConfig,
    construct_id: str,
    metric: cloudwatch.IMetric,
    description: str,
    notify: actions.SnsAction,
    *,
    threshold: float = 1,
    comparison_operator: cloudwatch.ComparisonOperator = (
        cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
    ),
    treat_missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
) -> cloudwatch.Alarm:
    """An alarm on one period of ``metric`` that emails through ``notify``."""
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=config.names.alarm(construct_id),
        metric=metric,
        alarm_description=f"{description} Runbook: {config.runbook(runbook_anchor(construct_id))}",
        threshold=threshold,
        evaluation_periods=1,
        comparison_operator=comparison_operator,
        treat_missing_data=treat_missing_data,
    )
    alarm.add_alarm_action(notify)
    return alarm
