"""The alert topic: TLS-only, CloudWatch alarms of this deployment may publish, and the
on-call email subscribed."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

import pytest
from aws_cdk.assertions import Match, Template

from tests.cdk.cfn import one, render, resources
from tests.cdk.conftest import ALERT_EMAIL


@pytest.fixture(scope="module")
def alerts_template(assembly) -> dict:
    return assembly.template("Alerts")


@pytest.fixture(scope="module")
def alerts(alerts_template) -> Template:
    return Template.from_json(alerts_template)


def test_topic_is_named_for_the_other_stacks(alerts):
    alerts.has_resource_properties("AWS::SNS::Topic", {"TopicName": "terrific-totes-dev-alerts"})


def test_email_subscription_from_context(alerts):
    alerts.resource_count_is("AWS::SNS::Subscription", 1)
    alerts.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": ALERT_EMAIL}
    )


def test_topic_refuses_publishing_without_tls(alerts):
    alerts.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "sns:Publish",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_alarms_and_rules_of_this_deployment_may_publish(alerts_template):
    topic_id, _ = one(alerts_template, "AWS::SNS::Topic")
    [policy] = resources(alerts_template, "AWS::SNS::TopicPolicy").values()
    statements = render(policy["Properties"]["PolicyDocument"]["Statement"])
    assert [s for s in statements if s["Effect"] == "Allow"] == [
        {
            "Sid": "CloudWatchAlarmsOfThisDeployment",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": f"${{{topic_id}}}",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"},
                "ArnLike": {
                    "aws:SourceArn": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:"
                    "${AWS::AccountId}:alarm:terrific-totes-dev.*"
                },
            },
        },
        {
            "Sid": "EventBridgeRulesOfThisDeployment",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": f"${{{topic_id}}}",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"},
                "ArnLike": {
                    "aws:SourceArn": "arn:${AWS::Partition}:events:${AWS::Region}:"
                    "${AWS::AccountId}:rule/terrific-totes-dev.*"
                },
            },
        },
    ]
    # The TLS-only Deny stays, for every principal.
    [deny] = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def alarm_names(assembly) -> list[str]:
    """Every alarm of every stack (an alarm without a name gets a made-up one: None here)."""
    return [
        alarm["Properties"].get("AlarmName")
        for path in sorted(assembly.outdir.glob("*.template.json"))
        for alarm in resources(json.loads(path.read_text()), "AWS::CloudWatch::Alarm").values()
    ]


def test_every_alarm_matches_the_topic_policy_and_no_other_environment_does(synths):
    pattern = "terrific-totes-dev.*"
    names = alarm_names(synths.default)
    assert "terrific-totes-dev.WarehouseDifferences" in names  # the Audit stack's too
    assert all(name and fnmatchcase(name, pattern) for name in names)
    prod = alarm_names(synths.prod)
    assert prod and not any(fnmatchcase(name or "", pattern) for name in prod)
    # An environment whose name starts like another's ("dev-x") cannot match it either.
    assert not fnmatchcase("terrific-totes-dev-x.ExecutionsTimedOut", pattern)


def warnings(assembly) -> list[str]:
    """What synth warned of, in every stack."""
    return [
        str(entry["data"])
        for path in sorted(assembly.outdir.glob("*.metadata.json"))
        for entries in json.loads(path.read_text()).values()
        for entry in entries
        if entry["type"] == "aws:cdk:warning"
    ]


def test_a_runbook_link_an_email_cannot_open_is_warned_of_at_synth(synths):
    assert any("runbook as 'docs/runbooks.md'" in w for w in warnings(synths.default))
    assert not any("runbook" in w for w in warnings(synths.prod))  # an https:// address
