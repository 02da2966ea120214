"""Which warehouse the notebook opens, and reading views: DSN from the environment, a .env
file, else the embedded one; a warehouse without views is refused with what to do."""

from __future__ import annotations

import os

import pytest

from totes.analytics import lake_tables
from totes.analytics.warehouse import (
    Warehouse,
    WarehouseNotReadyError,
    use_project_state_dir,
    warehouse_dsn,
)


@pytest.fixture
def no_settings(monkeypatch, tmp_path):
    """A working folder without .env, and none of the variables set."""
    for name in ("WAREHOUSE_DSN", "LAKE", "TOTES_STATE_DIR", "TOTES_ENV_FILE"):
        # Set, then removed: monkeypatch restores the original state (absent, say) even
        # after the code under test sets the variable itself.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_environment_names_the_warehouse(no_settings, monkeypatch, generated):
    monkeypatch.setenv("WAREHOUSE_DSN", generated.warehouse_dsn)
    assert warehouse_dsn() == generated.warehouse_dsn
    assert Warehouse.connect().view("report_revenue_by_month").height > 0


def test_a_dotenv_file_names_the_warehouse_and_the_lake(no_settings, generated):
    (no_settings / ".env").write_text(
        f"WAREHOUSE_DSN={generated.warehouse_dsn}\nLAKE={generated.lake_path}\n"
    )
    (no_settings / "notebooks").mkdir()
    os.chdir(no_settings / "notebooks")  # found from a subfolder, as from notebooks/
    assert warehouse_dsn() == generated.warehouse_dsn
    assert lake_tables.local_lake().transformed_batches() == generated.lake.transformed_batches()


def test_the_password_is_not_in_the_description():
    assert "s3cret" not in Warehouse("host=h dbname=w user=u password=s3cret").description


def test_a_warehouse_without_views_says_to_run_the_pipeline(empty_db):
    with pytest.raises(WarehouseNotReadyError, match="make run"):
        Warehouse(empty_db).check_ready()


def test_only_the_warehouses_views_can_be_read_by_name(generated):
    with pytest.raises(KeyError, match="not one of the warehouse's views"):
        Warehouse(generated.warehouse_dsn).view("pg_authid")


def test_without_settings_the_projects_state_folder_is_used_from_a_subfolder(no_settings):
    project = no_settings / "repo"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    os.chdir(project / "notebooks")  # where a notebook's kernel runs

    # The embedded warehouse (environment.warehouse_dsn) is then the project's: the one
    # `make run` fills, not a new, empty notebooks/.state.
    assert use_project_state_dir() == project / ".state"
    assert os.environ["TOTES_STATE_DIR"] == str(project / ".state")


def test_a_set_state_folder_wins(no_settings, monkeypatch):
    monkeypatch.setenv("TOTES_STATE_DIR", str(no_settings / "elsewhere"))
    assert use_project_state_dir() == no_settings / "elsewhere"


def test_the_env_file_variable_names_the_file_as_for_the_totes_command(
    no_settings, monkeypatch, generated
):
    settings = no_settings / "elsewhere.env"
    settings.write_text(f"WAREHOUSE_DSN={generated.warehouse_dsn}\n")
    (no_settings / ".env").write_text("WAREHOUSE_DSN=host=/nowhere dbname=wrong\n")
    monkeypatch.setenv("TOTES_ENV_FILE", str(settings))
    assert warehouse_dsn() == generated.warehouse_dsn
