"""The scheduled audit: a Lambda that compares the warehouse with ToteSys
(``totes.pipeline.audit``), its schedule, and the alarms that email its findings.

- The function reads both database secrets and writes its own log group; nothing else (it
  never touches the lake, and its SQL runs in read-only transactions).
- EventBridge Scheduler invokes it (context ``totes:auditSchedule``, hourly by default;
  disabled with the pipeline's schedule, ``totes:scheduleEnabled``). A failed audit is not
  retried: the next scheduled one is as good, and the errors alarm says it failed.
- Each audit publishes ``WarehouseDifferences`` per table and in total (table=all). The
  alarm on the total treats missing data as "keep the state", so it reflects the latest
  audit whatever the schedule: it goes off when an audit finds a difference and clears
  when one finds none.
"""

from __future__ import annotations

from pathlib import Path

import jsii
from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.alarms import ALARM_PERIOD, alert_alarm
from stacks.config import DeployConfig
from stacks.functions_stack import (
    POWERTOOLS_ENVIRONMENT,
    handler_function,
    import_secret,
    network_placement,
    read_secret,
)
from totes.contract import AUDIT_TOTAL, DIFFERENCES_METRIC, METRICS_NAMESPACE

# Measured at scale 100 (docs/deploy.md, "The audit"): the databases do the work, the
# handler stays under 50 MiB; 15 minutes leaves room for a slow database or a larger ToteSys.
AUDIT_MEMORY_MB = 512
AUDIT_TIMEOUT = Duration.minutes(15)


class AuditStack(Stack):
    """The audit function, its schedule, and alarms on differences and on failures."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        code_dir: Path,
        **kwargs,
    ):
        super().__init__(scope, construct_id, **kwargs)
        name = config.names.audit_function
        source_secret = import_secret(self, "SourceDbSecret", config.source_db_secret)
        warehouse_secret = import_secret(self, "WarehouseDbSecret", config.warehouse_db_secret)

        self.function, self.log_group = handler_function(
            self,
            config,
            "audit",
            function_name=name,
            description="Compare the warehouse with ToteSys; publish the differences",
            role_description="Terrific Totes audit Lambda: reads the two database secrets only",
            statements=[(read_secret(source_secret), None), (read_secret(warehouse_secret), None)],
            code_dir=code_dir,
            memory_mb=AUDIT_MEMORY_MB,
            timeout=AUDIT_TIMEOUT,
            environment={
                "SOURCE_DB_SECRET_ARN": source_secret.secret_arn,
                "WAREHOUSE_DB_SECRET_ARN": warehouse_secret.secret_arn,
            },
            network=network_placement(self, config),
            retry_attempts=0,  # async invocations: the next scheduled audit is the retry
        )

        self.schedule = scheduler.Schedule(
            self,
            "AuditSchedule",
            description="Compare the warehouse with ToteSys",
            schedule=scheduler.ScheduleExpression.expression(config.audit_schedule),
            enabled=config.schedule_enabled,
            target=_InvokeLatest(self, self.function),
        )

        alert_topic = sns.Topic.from_topic_arn(
            self,
            "AlertTopic",
            self.format_arn(service="sns", resource=config.names.alert_topic),
        )
        notify = actions.SnsAction(alert_topic)
        # Named as the alert topic's policy expects: CloudWatch may publish only for this
        # deployment's alarms, by name.
        self.differences_alarm = alert_alarm(
            self,
            config,
            "WarehouseDifferences",
            cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=DIFFERENCES_METRIC,
                # Powertools adds the service to every metric's dimensions.
                dimensions_map={
                    "table": AUDIT_TOTAL,
                    "service": POWERTOOLS_ENVIRONMENT["POWERTOOLS_SERVICE_NAME"],
                },
                statistic="Maximum",
                period=ALARM_PERIOD,
            ),
            "The audit found the warehouse different from ToteSys. Run `totes reconcile` "
            "against the two databases (or read the audit's log) for the tables, ids and "
            "columns; the metric WarehouseDifferences has the count per table.",
            notify,
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.IGNORE,
        )
        self.errors_alarm = alert_alarm(
            self,
            config,
            "AuditErrors",
            cloudwatch.Metric(
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions_map={"FunctionName": name},
                statistic="Sum",
                period=ALARM_PERIOD,
            ),
            "The audit could not compare the warehouse with ToteSys (a database "
            "unreachable, a table missing ...): see its log group for the error.",
            notify,
        )


@jsii.implements(scheduler.IScheduleTarget)
class _InvokeLatest:
    """Invoke one function's $LATEST, asynchronously, with input {}, never retried.

    ``aws_scheduler_targets.LambdaInvoke`` grants invoke on every version and alias too
    (``<arn>:*``); the schedule needs only the function itself.
    """

    def __init__(self, scope: Construct, function: lambda_.IFunction):
        self.function = function
        self.role = iam.Role(
            scope,
            "AuditScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(scope).account}},
            ),
            description="EventBridge Scheduler: invoke the Terrific Totes audit Lambda only",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[function.function_arn]
            )
        )

    def bind(self, _schedule: scheduler.ISchedule) -> scheduler.ScheduleTargetConfig:
        return scheduler.ScheduleTargetConfig(
            arn=self.function.function_arn,
            role=self.role,
            input=scheduler.ScheduleTargetInput.from_object({}),
            # A start that cannot happen within 15 minutes is superseded by the next one.
            retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                maximum_event_age_in_seconds=900, maximum_retry_attempts=0
            ),
        )
