"""The alert topic: TLS-only, with the on-call email subscribed."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from tests.cdk.conftest import ALERT_EMAIL


@pytest.fixture(scope="module")
def alerts(assembly) -> Template:
    return Template.from_json(assembly.template("Alerts"))


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
