"""Alarms (all to the alert topic) and the operations dashboard.

One failure, one email. A run that fails in a stage sends its own alert (the state
machine's failure branch: stage, error, batch, execution), so nothing here alarms on
failed executions or on Lambda errors: those would be the second and third email about
the same failure, with less in them. Alarms cover only what a run cannot report itself:

- ExecutionsTimedOut, ExecutionsAborted: a Catch never sees an execution-level timeout or
  a stop, so no alert was sent;
- <Stage>Throttles: Lambda refused to start a function (account concurrency); the run may
  survive on retries, but the capacity problem is real and the stage's alert would blame
  a symptom;
- NoSuccessfulRun: silence. A schedule that stopped, a role that cannot start the state
  machine, or an alert path that itself failed produce no email at all; 30 minutes without
  a successful run (the freshness promise) catches all of them.

And one EventBridge rule, UnreportedFailure: a run that ended FAILED with an error other
than the failure branch's own (``PipelineFailed``) sent no alert: a Catch cannot catch
``States.DataLimitExceeded`` or ``States.Runtime``, and the emails themselves can fail. It
emails the error and its cause at once, where NoSuccessfulRun would wait 30 minutes and
miss a failure between successes.

docs/runbooks.md has one section per alarm and per alert; each alarm's description links
to its section (context ``totes:runbookUrl``).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.alarms import ALARM_PERIOD, alert_alarm
from stacks.config import DeployConfig
from totes.contract import DURATION_METRIC, METRICS_NAMESPACE, ROW_METRICS


class MonitoringStack(Stack):
    """Alarms on the state machine and each function, and one dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        **kwargs,
    ):
        super().__init__(scope, construct_id, **kwargs)
        # The other stacks' resources, by name (see stacks/names.py).
        functions = {stage: _LambdaMetrics(name) for stage, name in config.names.functions.items()}
        state_machine = sfn.StateMachine.from_state_machine_name(
            self, "Pipeline", config.names.state_machine
        )
        alert_topic = sns.Topic.from_topic_arn(
            self,
            "AlertTopic",
            self.format_arn(service="sns", resource=config.names.alert_topic),
        )
        notify = actions.SnsAction(alert_topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        def alarm(construct_id: str, metric: cloudwatch.IMetric, description: str, **options):
            created = alert_alarm(
                self, config, construct_id, metric, description, notify, **options
            )
            self.alarms[construct_id] = created
            return created

        sum_5m = {"period": ALARM_PERIOD, "statistic": "Sum"}
        alarm(
            "ExecutionsTimedOut",
            state_machine.metric_timed_out(**sum_5m),
            f"A pipeline run took over {config.execution_timeout_seconds} s and was stopped: "
            "no failure email was sent for it. Look for a slow stage or database.",
        )
        alarm(
            "ExecutionsAborted",
            state_machine.metric_aborted(**sum_5m),
            "A pipeline run was stopped by hand or by a deployment; no failure email was sent.",
        )
        # Freshness: every run ends in success, even "nothing new", so 30 minutes without
        # one means the schedule, the role or the pipeline is broken.
        if config.schedule_enabled:
            alarm(
                "NoSuccessfulRun",
                state_machine.metric_succeeded(period=Duration.minutes(30), statistic="Sum"),
                "No pipeline run has succeeded in 30 minutes: the 30-minute freshness promise "
                "is broken, and no run reported why. Check the schedule (is it enabled?) and the "
                "latest executions (`totes status --aws`).",
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            )
        self.unreported_failure = _unreported_failure_rule(
            self, config, state_machine.state_machine_arn, alert_topic
        )
        for name, function in functions.items():
            stage = name.title()
            alarm(
                f"{stage}Throttles",
                function.metric_throttles(**sum_5m),
                f"The {name} Lambda was throttled: the account's concurrency is exhausted.",
            )

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=config.names.dashboard,
            default_interval=Duration.days(1),
            widgets=[
                [
                    cloudwatch.TextWidget(
                        markdown="# Terrific Totes pipeline\nRuns every scheduled interval: "
                        f"`{config.schedule}`. Alarms email the alert topic.",
                        width=24,
                        height=2,
                    )
                ],
                [
                    cloudwatch.GraphWidget(
                        title="Executions",
                        left=[
                            state_machine.metric_started(statistic="Sum", label="Started"),
                            state_machine.metric_succeeded(statistic="Sum", label="Succeeded"),
                            state_machine.metric_failed(statistic="Sum", label="Failed"),
                            state_machine.metric_timed_out(statistic="Sum", label="Timed out"),
                            state_machine.metric_aborted(statistic="Sum", label="Aborted"),
                        ],
                        width=12,
                    ),
                    cloudwatch.GraphWidget(
                        title="Execution duration (ms)",
                        left=[
                            state_machine.metric_time(statistic="Average", label="Average"),
                            state_machine.metric_time(statistic="Maximum", label="Maximum"),
                        ],
                        width=12,
                    ),
                ],
                [
                    cloudwatch.GraphWidget(
                        title="Function errors and throttles",
                        left=[
                            function.metric_errors(statistic="Sum", label=f"{name} errors")
                            for name, function in functions.items()
                        ],
                        right=[
                            function.metric_throttles(statistic="Sum", label=f"{name} throttles")
                            for name, function in functions.items()
                        ],
                        width=12,
                    ),
                    cloudwatch.GraphWidget(
                        title="Function duration (ms, max)",
                        left=[
                            function.metric_duration(statistic="Maximum", label=name)
                            for name, function in functions.items()
                        ],
                        width=12,
                    ),
                ],
                [
                    cloudwatch.GraphWidget(
                        title=f"{metric} by table",
                        left=[_search(metric, "Sum")],
                        width=8,
                    )
                    for metric in ROW_METRICS.values()
                ],
                [
                    cloudwatch.GraphWidget(
                        title="Run duration per stage (s)",
                        left=[_search(DURATION_METRIC, "Maximum")],
                        width=24,
                    )
                ],
            ],
        )


# The failure branch's own end (statemachine/pipeline.asl.json, "Pipeline failed"): its
# run has sent its alert.
REPORTED_FAILURE = "PipelineFailed"
UNREPORTED_FAILURE_ANCHOR = "alert-a-run-failed-without-its-own-alert"


def _unreported_failure_rule(
    scope: Construct, config: DeployConfig, state_machine_arn: str, topic: sns.ITopic
) -> events.Rule:
    """Runs that ended FAILED without sending their alert, emailed as they end."""
    field = events.EventField.from_path
    message = (
        f"A Terrific Totes pipeline run failed in a way it could not report itself.\n\n"
        f"Execution: {field('$.detail.name')}\n"
        f"Error:     {field('$.detail.error')}\n"
        f"Cause:     {field('$.detail.cause')}\n\n"
        f"What now: {config.runbook(UNREPORTED_FAILURE_ANCHOR)}\n\n"
        "Open the execution in the Step Functions console:\n"
        f"https://{Stack.of(scope).region}.console.aws.amazon.com/states/home?region="
        f"{Stack.of(scope).region}#/v2/executions/details/{field('$.detail.executionArn')}"
    )
    return events.Rule(
        scope,
        "UnreportedFailure",
        # Named as the alert topic's policy expects (it admits this deployment's rules).
        rule_name=config.names.alarm("UnreportedFailure"),
        description="A pipeline run ended FAILED without sending its own alert.",
        event_pattern=events.EventPattern(
            source=["aws.states"],
            detail_type=["Step Functions Execution Status Change"],
            detail={
                "stateMachineArn": [state_machine_arn],
                "status": ["FAILED"],
                "error": [{"anything-but": REPORTED_FAILURE}],
            },
        ),
        targets=[targets.SnsTopic(topic, message=events.RuleTargetInput.from_text(message))],
    )


class _LambdaMetrics:
    """A function's AWS/Lambda metrics by its name: plain dimensions in the template, where
    an imported IFunction would carve the name out of an ARN with Fn::Select/Fn::Split."""

    def __init__(self, function_name: str):
        self.function_name = function_name

    def _metric(self, metric_name: str, **options) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name=metric_name,
            dimensions_map={"FunctionName": self.function_name},
            **options,
        )

    def metric_errors(self, **options) -> cloudwatch.Metric:
        return self._metric("Errors", **options)

    def metric_throttles(self, **options) -> cloudwatch.Metric:
        return self._metric("Throttles", **options)

    def metric_duration(self, **options) -> cloudwatch.Metric:
        return self._metric("Duration", **options)


def _search(metric_name: str, statistic: str) -> cloudwatch.MathExpression:
    """Every series of one custom metric, whatever dimensions Powertools adds to it."""
    return cloudwatch.MathExpression(
        expression=(
            f'SEARCH(\'Namespace="{METRICS_NAMESPACE}" MetricName="{metric_name}"\', '
            f"'{statistic}', 300)"
        ),
        label="",
        period=Duration.minutes(5),
    )
