"""Database credentials from AWS Secrets Manager, as a libpq DSN (the Lambdas on AWS)."""

from __future__ import annotations

import json
from functools import cache

import boto3


@cache
def dsn_from_secret(secret_id: str) -> str:
    """Build a libpq DSN from a Secrets Manager secret (the RDS JSON shape).

    Cached for the life of the process, so a warm Lambda does not fetch it again.
    """
    raw = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    secret = json.loads(raw)
    if "dsn" in secret:
        return secret["dsn"]
    parts = {
        "host": secret["host"],
        "port": secret.get("port", 5432),
        "dbname": secret.get("dbname") or secret.get("database"),
        "user": secret.get("username") or secret.get("user"),
        "password": secret["password"],
    }
    return " ".join(f"{k}='{_escape(str(v))}'" for k, v in parts.items() if v is not None)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
