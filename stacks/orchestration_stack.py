"""The pipeline's state machine, loaded from ``statemachine/pipeline.asl.json`` (the same
file the local runner executes; ``totes.contract`` finds it), and the schedule that starts it.

``DefinitionBody.from_file`` uploads the file as an asset and CloudFormation fills in the
``${...}`` placeholders from ``definition_substitutions`` at deploy time. It grants
nothing: the role gets invoke on exactly the three functions and publish on the topic.

Runs may overlap (a slow run is still going when the next one starts): the pipeline makes
that safe itself (advisory locks, idempotent and order-independent loads), so the schedule
does not need to skip.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import DeployConfig
from stacks.functions_stack import retention
from stacks.nag_acknowledgments import Reason, acknowledge
from totes.contract import check_substitutions, definition_path, read_definition


class OrchestrationStack(Stack):
    """The Standard state machine (logs ALL, X-Ray) and its EventBridge Scheduler schedule."""

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
        functions = {
            stage: lambda_.Function.from_function_name(self, f"{stage.title()}Function", name)
            for stage, name in config.names.functions.items()
        }
        alert_topic = sns.Topic.from_topic_arn(
            self,
            "AlertTopic",
            self.format_arn(service="sns", resource=config.names.alert_topic),
        )
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.substitutions = {
            "ExtractFunctionArn": functions["extract"].function_arn,
            "TransformFunctionArn": functions["transform"].function_arn,
            "LoadFunctionArn": functions["load"].function_arn,
            "AlertTopicArn": alert_topic.topic_arn,
            "RetryIntervalSeconds": str(config.retry_interval_seconds),
            "ExecutionTimeoutSeconds": str(config.execution_timeout_seconds),
            "Region": self.region,
            "RunbookUrl": config.runbook_url,
        }
        check_substitutions(read_definition(), self.substitutions)

        self.log_group = logs.LogGroup(
            self,
            "StateMachineLogGroup",
            # Under /aws/vendedlogs/: keeps the account's CloudWatch Logs resource policy
            # small, however many state machines log there.
            log_group_name=config.names.state_machine_log_group,
            retention=retention(config.log_retention_days),
            removal_policy=removal,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "Pipeline",
            state_machine_name=config.names.state_machine,
            comment="Terrific Totes: extract -> transform -> load, alert on failure",
            definition_body=sfn.DefinitionBody.from_file(definition_path()),
            definition_substitutions=self.substitutions,
            state_machine_type=sfn.StateMachineType.STANDARD,
            logs=sfn.LogOptions(
                destination=self.log_group,
                level=sfn.LogLevel.ALL,
                include_execution_data=True,
            ),
            tracing_enabled=True,
            # Always deleted with the stack: it holds no data (its logs are retained in the
            # log group), and a retained copy would block a redeploy under the same name.
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = self.state_machine.role
        # Unqualified ARNs only: the definition invokes $LATEST by ARN, never a version.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[
                    functions[name].function_arn for name in ("extract", "transform", "load")
                ],
            )
        )
        alert_topic.grant_publish(role)
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]", Reason.STATES_LOGS_AND_XRAY)

        self.schedule = scheduler.Schedule(
            self,
            "Schedule",
            description="Start one incremental pipeline run",
            schedule=scheduler.ScheduleExpression.expression(config.schedule),
            enabled=config.schedule_enabled,
            target=targets.StepFunctionsStartExecution(
                self.state_machine,
                input=scheduler.ScheduleTargetInput.from_object({}),
                # A start that cannot happen within one interval is superseded by the next.
                max_event_age=Duration.minutes(5),
                retry_attempts=3,
            ),
        )
