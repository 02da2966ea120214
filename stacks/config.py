"""Deployment settings, read from CDK context (``cdk.json`` or ``-c key=value``).

Every key has a default here, so the app synthesises with no context at all (tests, a
first ``make synth``); ``cdk.json`` repeats the defaults so they are visible and editable in
one place, and ``docs/deploy.md`` explains each one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from constructs import Node

from stacks.names import DeploymentNames
from totes.contract import DEFAULT_RUNBOOK_URL

PREFIX = "totes:"

# The defaults, also written out in cdk.json (a test keeps the two in step).
DEFAULTS: dict[str, Any] = {
    "environment": "dev",
    "owner": "data-engineering",
    "alertEmail": "",
    "schedule": "rate(10 minutes)",
    "scheduleEnabled": True,
    "auditSchedule": "rate(1 hour)",
    "sourceDbSecret": "totes/source-db",
    "warehouseDbSecret": "totes/warehouse-db",
    "vpcId": "",
    "subnetIds": "",
    "securityGroupId": "",
    "removalPolicy": "retain",
    "logRetentionDays": 90,
    "executionTimeoutSeconds": 1200,
    "retryIntervalSeconds": 5,
    # Where the alert and alarm emails point for what to do (docs/runbooks.md): set it to the
    # file's web address, e.g. https://github.com/<org>/<repo>/blob/main/docs/runbooks.md
    "runbookUrl": DEFAULT_RUNBOOK_URL,
}

# Part of every physical name (S3 bucket names allow lower case, digits and hyphens).
_ENVIRONMENT = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
_SCHEDULE = re.compile(r"^(rate|cron)\(.+\)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(ValueError):
    """A context value the app cannot deploy with; the message names the key to fix."""


@dataclass(frozen=True)
class DeployConfig:
    """Everything that differs between deployments; nothing else is configurable."""

    environment: str
    owner: str
    alert_email: str
    schedule: str
    schedule_enabled: bool
    audit_schedule: str
    source_db_secret: str
    warehouse_db_secret: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    security_group_id: str
    retain_data: bool
    log_retention_days: int
    execution_timeout_seconds: int
    retry_interval_seconds: int
    runbook_url: str

    def runbook(self, section: str) -> str:
        """The address of one runbook section (``section`` is its heading's anchor)."""
        return f"{self.runbook_url}#{section}"

    @property
    def names(self) -> DeploymentNames:
        return DeploymentNames(self.environment)

    @property
    def in_vpc(self) -> bool:
        return bool(self.vpc_id)

    @classmethod
    def from_context(cls, node: Node) -> DeployConfig:
        """Read ``totes:*`` context values from ``node`` (usually the App's)."""

        def get(key: str) -> Any:
            value = node.try_get_context(PREFIX + key)
            return DEFAULTS[key] if value is None else value

        return cls.from_mapping({key: get(key) for key in DEFAULTS})

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> DeployConfig:
        """Validate raw values (strings from ``-c``, or JSON types from cdk.json)."""
        merged = {**DEFAULTS, **values}
        environment = str(merged["environment"]).strip()
        if not _ENVIRONMENT.match(environment):
            raise ConfigError(
                f"{PREFIX}environment: {environment!r} must be 1-12 lower-case letters, digits "
                "or hyphens, starting with a letter (it is part of every resource name)"
            )
        owner = str(merged["owner"]).strip()
        if not owner:
            raise ConfigError(f"{PREFIX}owner must name who owns the deployment (a cost tag)")
        email = str(merged["alertEmail"]).strip()
        if email and not _EMAIL.match(email):
            raise ConfigError(f"{PREFIX}alertEmail: {email!r} is not an email address")
        schedule = str(merged["schedule"]).strip()
        if not _SCHEDULE.match(schedule):
            raise ConfigError(
                f"{PREFIX}schedule: {schedule!r} is not an EventBridge Scheduler expression "
                "such as 'rate(10 minutes)' or 'cron(0/10 * * * ? *)'"
            )
        audit_schedule = str(merged["auditSchedule"]).strip()
        if not _SCHEDULE.match(audit_schedule):
            raise ConfigError(
                f"{PREFIX}auditSchedule: {audit_schedule!r} is not an EventBridge Scheduler "
                "expression such as 'rate(1 hour)' or 'cron(0 * * * ? *)'"
            )
        subnets = merged["subnetIds"]
        if isinstance(subnets, str):
            subnets = [s for s in (part.strip() for part in subnets.split(",")) if s]
        vpc_id = str(merged["vpcId"]).strip()
        security_group = str(merged["securityGroupId"]).strip()
        if vpc_id and not subnets:
            raise ConfigError(f"{PREFIX}vpcId is set: {PREFIX}subnetIds must list subnets too")
        if (subnets or security_group) and not vpc_id:
            raise ConfigError(f"{PREFIX}subnetIds/securityGroupId need {PREFIX}vpcId as well")
        removal = str(merged["removalPolicy"]).strip().lower()
        if removal not in {"retain", "destroy"}:
            raise ConfigError(f"{PREFIX}removalPolicy: {removal!r} is not 'retain' or 'destroy'")
        timeout = _positive_int(merged, "executionTimeoutSeconds")
        if timeout > 1800:
            raise ConfigError(
                f"{PREFIX}executionTimeoutSeconds: {timeout} is over 1800; a run that long "
                "already breaks the 30-minute freshness promise (see docs/deploy.md)"
            )
        runbook_url = str(merged["runbookUrl"]).strip()
        if not runbook_url or any(c.isspace() for c in runbook_url) or "#" in runbook_url:
            raise ConfigError(
                f"{PREFIX}runbookUrl: {runbook_url!r} must be the runbooks file's address "
                "(no spaces, no #anchor: each alarm adds its own section's)"
            )
        for key in ("sourceDbSecret", "warehouseDbSecret"):
            if not str(merged[key]).strip():
                raise ConfigError(f"{PREFIX}{key} must name a Secrets Manager secret")
        return cls(
            environment=environment,
            owner=owner,
            alert_email=email,
            schedule=schedule,
            schedule_enabled=_boolean(merged, "scheduleEnabled"),
            audit_schedule=audit_schedule,
            source_db_secret=str(merged["sourceDbSecret"]).strip(),
            warehouse_db_secret=str(merged["warehouseDbSecret"]).strip(),
            vpc_id=vpc_id,
            subnet_ids=tuple(subnets),
            security_group_id=security_group,
            retain_data=removal == "retain",
            log_retention_days=_positive_int(merged, "logRetentionDays"),
            execution_timeout_seconds=timeout,
            retry_interval_seconds=_positive_int(merged, "retryIntervalSeconds"),
            runbook_url=runbook_url,
        )


def _boolean(values: dict[str, Any], key: str) -> bool:
    value = values[key]
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise ConfigError(f"{PREFIX}{key}: {value!r} is not true or false")


def _positive_int(values: dict[str, Any], key: str) -> int:
    try:
        number = int(values[key])
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ConfigError(f"{PREFIX}{key}: {values[key]!r} is not a positive whole number")
    return number
