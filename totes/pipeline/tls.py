"""TLS to the databases: verify the server, by default against the Amazon RDS CAs.

A secret in the RDS shape says nothing about TLS, and libpq's default (``prefer``)
encrypts without checking who answers, so a DSN built from a secret verifies the server's
certificate and host name (``sslmode=verify-full``) against the RDS CA bundle shipped in
the package (``certs/rds-ca-bundle.pem``, from ``scripts/rds_ca_bundle.py``), unless the
secret says otherwise with its own fields:

- ``sslmode`` (default ``verify-full``): libpq's ``sslmode``; ``verify-ca``, or ``require``
  (encrypts, checks nothing) for a database that cannot be verified;
- ``sslrootcert`` (default: the bundled RDS CAs): a CA file, or ``system`` (the OS trust
  store, libpq 16+) for a database whose certificate a public CA signed.

A DSN given directly (``SOURCE_DSN``, ``WAREHOUSE_DSN``: the laptop, the tests) is used as
it is: the embedded PostgreSQL listens on a Unix socket, where libpq does no TLS.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

RDS_CA_BUNDLE = Path(__file__).resolve().parent / "certs" / "rds-ca-bundle.pem"
DEFAULT_SSLMODE = "verify-full"
_VERIFYING = frozenset({"verify-ca", "verify-full"})


def tls_settings(secret: Mapping[str, object]) -> dict[str, str]:
    """libpq's TLS keywords for a database described by ``secret`` (its fields win)."""
    sslmode = str(secret.get("sslmode") or DEFAULT_SSLMODE)
    settings = {"sslmode": sslmode}
    if sslmode in _VERIFYING:
        settings["sslrootcert"] = str(secret.get("sslrootcert") or RDS_CA_BUNDLE)
    return settings
