"""Physical names of what one stack makes and another uses.

The stacks find each other's resources by these names rather than through CloudFormation
exports. Exports pin a producer (a bucket or function cannot be replaced while another
stack imports it) and turn ARNs into opaque ``Fn::ImportValue`` tokens, which makes IAM
policies and cdk-nag findings unreadable. Names keep every stack readable, deployable and
testable on its own; ``build_app`` declares the deploy order explicitly instead.

One deployment per account and region (the names embed neither a stage nor a suffix).
"""

from __future__ import annotations

from aws_cdk import Aws

PROJECT = "terrific-totes"
FUNCTION_NAMES = {stage: f"{PROJECT}-{stage}" for stage in ("extract", "transform", "load")}
ALERT_TOPIC_NAME = f"{PROJECT}-alerts"
STATE_MACHINE_NAME = f"{PROJECT}-pipeline"
DASHBOARD_NAME = "TerrificTotes-Pipeline"


def bucket_name(lake: str) -> str:
    """``terrific-totes-<lake>-<account>-<region>``: unique, and readable in the console."""
    return f"{PROJECT}-{lake}-{Aws.ACCOUNT_ID}-{Aws.REGION}"


INGESTION_BUCKET = bucket_name("ingestion")
PROCESSED_BUCKET = bucket_name("processed")
ACCESS_LOGS_BUCKET = bucket_name("access-logs")
