"""The two write-once data lakes (ingestion: CSV, processed: Parquet) and their access log.

Every bucket: public access blocked, TLS enforced, S3-managed encryption, ownership
enforced (no ACLs). The lakes are versioned so that nothing is ever lost even though the
pipeline never overwrites or deletes an object (every key carries its batch id); noncurrent
versions can only come from a human, and they expire after 90 days.

Encryption is SSE-S3, not SSE-KMS: the access-log bucket must be SSE-S3 (S3 cannot deliver
server access logs to a KMS-encrypted bucket), and for the lakes a customer-managed key
would add per-request KMS cost and a key policy to maintain without protecting against
anyone the bucket policies and IAM do not already stop (no cross-account readers).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import DeployConfig
from stacks.nag_acknowledgments import Reason, acknowledge

NONCURRENT_VERSION_DAYS = 90
ACCESS_LOG_DAYS = 365


class StorageStack(Stack):
    """The ingestion and processed buckets, with server access logs to a third bucket."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, **kwargs):
        super().__init__(scope, construct_id, **kwargs)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        common = {
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "encryption": s3.BucketEncryption.S3_MANAGED,
            "enforce_ssl": True,
            "minimum_tls_version": 1.2,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            "removal_policy": removal,
        }

        # Server access logs need SSE-S3 on the target bucket (SSE-KMS is not supported).
        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            bucket_name=config.names.access_logs_bucket,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(ACCESS_LOG_DAYS))
            ],
            **common,
        )
        acknowledge(self.access_logs_bucket, "AwsSolutions-S1", Reason.ACCESS_LOG_TARGET)

        lake_rules = [
            s3.LifecycleRule(
                id="expire-noncurrent-versions",
                noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_DAYS),
                expired_object_delete_marker=True,
            ),
            s3.LifecycleRule(
                id="abort-incomplete-uploads",
                abort_incomplete_multipart_upload_after=Duration.days(7),
            ),
        ]

        def lake_bucket(construct_id: str, bucket_name: str, log_prefix: str) -> s3.Bucket:
            return s3.Bucket(
                self,
                construct_id,
                bucket_name=bucket_name,
                versioned=True,
                lifecycle_rules=lake_rules,
                server_access_logs_bucket=self.access_logs_bucket,
                server_access_logs_prefix=log_prefix,
                **common,
            )

        self.ingestion_bucket = lake_bucket(
            "IngestionBucket", config.names.ingestion_bucket, "ingestion/"
        )
        self.processed_bucket = lake_bucket(
            "ProcessedBucket", config.names.processed_bucket, "processed/"
        )
