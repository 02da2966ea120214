"""Every cdk-nag finding this app accepts, and why: the one place a security reviewer reads.

Each acknowledgment is made next to the construct it concerns (``acknowledge(construct,
rule, Reason.X)``), and its reason is written here, once. A finding that is not
acknowledged fails the synth (cdk-nag 3 reports through CDK's policy validation).

cdk-nag 3 acknowledges one finding at a time: ``AwsSolutions-IAM5[Resource::<arn>]`` for
each wildcard, not the whole rule, so a new wildcard always needs a new, reasoned line.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


class Reason(StrEnum):
    """Why a finding is acceptable here. The value is the text CDK records and prints."""

    ACCESS_LOG_TARGET = (
        "This bucket is the server access log target of the data lake buckets. Logging it "
        "into itself would loop, and a fourth bucket would only move the finding; it is "
        "private, TLS-only, versionless and expires logs after a year."
    )
    OBJECT_WILDCARD = (
        "Object-level actions (GetObject/PutObject) can only be granted on object ARNs, "
        "i.e. <bucket-arn>/<prefix>*. The bucket is this pipeline's own and the action list "
        "is explicit (never s3:*, never DeleteObject); the load stage reads nothing of the "
        "ingestion lake but the operators' _skipped/ records and writes to no lake at all."
    )
    STATES_LOGS_AND_XRAY = (
        "The state machine role's only '*' statement holds the actions AWS requires for "
        "Step Functions' own log delivery (logs:CreateLogDelivery, PutResourcePolicy, "
        "DescribeLogGroups, ...) and X-Ray tracing (xray:PutTraceSegments, GetSampling*): "
        "none of them supports resource-level permissions, and AWS documents Resource '*'. "
        "Invoke and publish are granted on the three function ARNs and the topic ARN only."
    )
    VPC_ACCESS_POLICY = (
        "AWSLambdaVPCAccessExecutionRole is the AWS-maintained policy for the ENI actions "
        "(ec2:CreateNetworkInterface etc.) a function needs to run in the databases' VPC; "
        "those actions do not support resource-level permissions, so a custom policy could "
        "not be narrower, only get out of date."
    )
    RUNTIME_AS_TESTED = (
        "The functions run the newest Lambda Python runtime that the development machines "
        "and CI can install, so that `make test` runs on the same Python as production "
        "(totes/contract.py PYTHON_VERSION, the Makefile's PYTHON). It is a "
        "supported runtime; moving to the newest one is a change of PYTHON_VERSION and "
        "PYTHON once the machines have it."
    )
    ALERT_TOPIC_NOT_KMS = (
        "Alerts carry operational text only (stage, error type and message, execution id), "
        "and they leave AWS as plain email, which topic encryption cannot protect. SSE would "
        "need a customer-managed key whose policy admits CloudWatch alarms (the AWS-managed "
        "aws/sns key does not), a cost and a way for the alert path itself to fail silently. "
        "Publishing is TLS-only (enforceSSL)."
    )
    ATHENA_RESULTS_NOT_LOGGED = (
        "This bucket holds only Athena query results, written by the workgroup and expired "
        "after 30 days; every query (who, when, which SQL) is already recorded by CloudTrail "
        "and the workgroup's query history. The access-log bucket admits the lakes' logs "
        "only (its policy names their ARNs), and a log bucket for re-creatable results "
        "would cost more than it tells."
    )
    ANALYST_OBJECT_WILDCARD = (
        "Athena reads the files of a table, and writes query results, as the querying "
        "analyst: object-level actions need object ARNs, <bucket-arn>/<prefix>*. Reading is "
        "limited to the warehouse tables' prefixes of the processed lake (not its manifests), "
        "writing to the results/ prefix of the workgroup's own results bucket; never Delete."
    )


def acknowledge(construct: IConstruct, finding: str, reason: Reason) -> None:
    """Accept one cdk-nag finding on ``construct`` (and its children), for ``reason``."""
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason.value))


def acknowledge_wildcards(principal: IConstruct, resources: list[str], reason: Reason) -> None:
    """Accept AwsSolutions-IAM5 for each wildcard ARN in ``resources``, all for ``reason``.

    The finding id spells the ARN the way cdk-nag does (``<AWS::Region>`` for a pseudo
    parameter, ``<Logical.Attr>`` for an attribute), so it is derived, not copied by hand.
    """
    stack = Stack.of(principal)
    for resource in resources:
        spelled = _nag_spelling(stack.resolve(resource))
        if "*" in spelled:
            acknowledge(principal, f"AwsSolutions-IAM5[Resource::{spelled}]", reason)


def _nag_spelling(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        return f"<{logical_id}.{attribute}>"
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_nag_spelling(part) for part in parts)
    raise ValueError(f"cannot spell {value!r} as cdk-nag does")
