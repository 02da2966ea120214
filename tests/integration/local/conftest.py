"""The laptop runtime's fixtures: a private state folder, and no developer's .env."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from totes.local import environment


@pytest.fixture(autouse=True)
def isolated_command(monkeypatch, tmp_path):
    """The `totes` command reads ./.env and keeps run reports in the state folder: a
    developer's own must neither steer the tests nor receive their runs."""
    monkeypatch.setenv("TOTES_ENV_FILE", "")
    monkeypatch.setenv("TOTES_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def state_dir(monkeypatch):
    # World-readable: as root, the embedded PostgreSQL runs as the user 'pgserver'.
    path = Path(tempfile.mkdtemp(prefix="totes-state-"))
    path.chmod(0o755)
    monkeypatch.setenv("TOTES_STATE_DIR", str(path))
    monkeypatch.setattr(environment, "_server", None)
    yield path
    if environment._server is not None:
        environment._server.stop()
