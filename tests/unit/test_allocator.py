"""polars' allocator is set up with one arena in every process that runs a stage."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("stage", ["transform", "load"])
def test_a_stage_process_gives_polars_one_allocator_arena(stage):
    """As a Lambda starts: the handler's module first, then polars (loaded by it)."""
    code = f"import lambdas.{stage}, os, polars\nprint(os.environ['_RJEM_MALLOC_CONF'])"
    environment = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    found = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    ).stdout
    # polars appends what it finds to its own settings, before it loads its library.
    assert found.strip().split(",")[-1] == "narenas:1"


def test_an_operators_own_allocator_setting_wins():
    code = "import totes, os\nprint(os.environ['_RJEM_MALLOC_CONF'])"
    environment = os.environ | {"_RJEM_MALLOC_CONF": "narenas:4"}
    found = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "narenas:4"
