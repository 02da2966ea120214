"""The laptop runtime's fixtures: a private state folder, and no developer's .env."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from totes.local import environment


@pytest.fixture(autouse=True)
def no_env_file(monkeypatch):
    """The `totes` command reads ./.env: a developer's own must not steer the tests."""
    monkeypatch.setenv("TOTES_ENV_FILE", "")


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
