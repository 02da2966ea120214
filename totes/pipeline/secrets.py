"""Database credentials from AWS Secrets Manager, as a libpq DSN (the Lambdas on AWS).

Secrets are cached for ``SECRET_MAX_AGE_SECONDS`` (Powertools' parameters utility), not for
the life of the container: after a rotation a warm Lambda picks the new password up within
that time, and at once when the database refuses the old one (``totes.pipeline.db``
fetches the secret again, once, on an authentication failure: ``SecretDsn.refetch``).
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

from totes.pipeline.redact import redact_dsn
from totes.pipeline.tls import tls_settings

# Long enough that a run (three stages, a few connections) fetches a secret once; short
# enough that a rotation reaches every warm container within minutes even without an
# authentication failure to prompt it.
SECRET_MAX_AGE_SECONDS = 300


class SecretFormatError(ValueError):
    """A secret's value is not one this pipeline can build a DSN from."""


class SecretDsn(str):
    """A DSN built from a secret, that remembers which one, so it can be fetched again.

    It is the DSN itself (a ``str``, passed through the stages unchanged); its ``repr``
    hides the password.
    """

    secret_id: str

    def __new__(cls, dsn: str, secret_id: str) -> SecretDsn:
        value = super().__new__(cls, dsn)
        value.secret_id = secret_id
        return value

    def __repr__(self) -> str:
        return f"SecretDsn({redact_dsn(self)!r}, secret_id={self.secret_id!r})"

    def refetch(self) -> SecretDsn:
        """The DSN from the secret's current value, bypassing the cache."""
        return dsn_from_secret(self.secret_id, force_fetch=True)


def dsn_from_secret(secret_id: str, *, force_fetch: bool = False) -> SecretDsn:
    """The DSN a Secrets Manager secret describes (cached; see the module's docstring)."""
    # Here, not at the top: it imports boto3 (0.2 s), which a run without secrets (a
    # laptop's) need not pay.
    from aws_lambda_powertools.utilities import parameters

    raw = parameters.get_secret(secret_id, max_age=SECRET_MAX_AGE_SECONDS, force_fetch=force_fetch)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return SecretDsn(dsn_from_secret_value(str(raw), secret_id), secret_id)


def dsn_from_secret_value(raw: str, secret_id: str | None = None) -> str:
    """A libpq DSN from a secret's JSON: the RDS shape (``host``, ``port``, ``dbname``,
    ``username``, ``password``) or ``{"dsn": ...}``; TLS verifies the server unless the
    secret's ``sslmode`` / ``sslrootcert`` say otherwise (``totes.pipeline.tls``)."""
    secret_id = secret_id or "the secret"
    try:
        secret = json.loads(raw)
    except json.JSONDecodeError:
        # The decoder's message quotes the document: say where, not what.
        raise SecretFormatError(f"{secret_id}: the secret's value is not JSON") from None
    if not isinstance(secret, dict):
        raise SecretFormatError(f"{secret_id}: the secret's value is not a JSON object")
    tls = tls_settings(secret)
    if "dsn" in secret:
        return _with_parameters(str(secret["dsn"]), tls)
    missing = [key for key in ("host", "password") if not secret.get(key)]
    if missing:
        raise SecretFormatError(
            f"{secret_id}: missing {', '.join(missing)} (expected the RDS shape: host, port, "
            "dbname, username, password; or a 'dsn')"
        )
    parts = {
        "host": secret["host"],
        "port": secret.get("port", 5432),
        "dbname": secret.get("dbname") or secret.get("database"),
        "user": secret.get("username") or secret.get("user"),
        "password": secret["password"],
        **tls,
    }
    return " ".join(f"{k}='{_escape(str(v))}'" for k, v in parts.items() if v is not None)


def _with_parameters(dsn: str, settings: dict[str, str]) -> str:
    """``dsn`` plus ``settings`` it does not set itself (key/value or URI form)."""
    if re.search(r"\bsslmode\s*=", dsn):  # the DSN chose its own TLS: keep all of it
        return dsn
    if "://" in dsn:
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in settings.items())
        return f"{dsn}{'&' if '?' in dsn else '?'}{query}"
    return " ".join([dsn, *(f"{k}='{_escape(v)}'" for k, v in settings.items())])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
