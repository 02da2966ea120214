"""`make bench` measures every stage, both COPY floors and the incremental runs (figures are
printed, not asserted: no timing is checked)."""

from __future__ import annotations

import json

import pytest

from totes.local import bench as bench_module
from totes.local.bench import bench, main


def test_bench_measures_each_stage_the_floors_and_the_incremental_runs(pg_server, tmp_path):
    tmp_path.chmod(0o755)
    results = {m.name: m for m in bench(pg_server, 0.01, tmp_path, burst_minutes=24 * 60)}

    assert list(results) == [
        "seed",
        "vacuum",
        "floor, keyed, before",
        "floor, unconstrained, before",
        "initial: extract",
        "initial: transform",
        "initial: load",
        "floor, keyed, after",
        "floor, unconstrained, after",
        "floor, keyed",
        "floor, unconstrained",
        "initial: pipeline (3 stages)",
        *(
            f"{run}: {step}"
            for run in (
                "after a 1440-minute burst",
                "nothing new",
                "reconciled, nothing new",
            )
            for step in ("extract", "transform", "load", "run")
        ),
    ]
    seeded = results["seed"].rows
    assert results["floor, keyed"].rows == seeded == results["floor, unconstrained"].rows
    for floor in ("floor, keyed", "floor, unconstrained"):  # the faster try, both named
        tries = [results[f"{floor}, {when}"].seconds for when in ("before", "after")]
        assert results[floor].seconds == min(tries)
        assert f"the faster of {tries[0]:.2f} s and {tries[1]:.2f} s" in results[floor].line()
    assert results["initial: extract"].rows == seeded
    assert results["initial: load"].rows == results["initial: transform"].rows > seeded
    assert results["after a 1440-minute burst: extract"].rows > 0  # a day of business at scale 0.01
    assert results["nothing new: extract"].rows == 0
    assert results["nothing new: load"].rows == 0
    assert results["reconciled, nothing new: extract"].rows == 0  # all equal
    # The run's peak is the highest of its stages' own (each measured from its start).
    assert results["after a 1440-minute burst: run"].peak_mib == max(
        results[f"after a 1440-minute burst: {step}"].peak_mib
        for step in ("extract", "transform", "load")
    )
    for stage in ("extract", "transform", "load"):
        assert results[f"initial: {stage}"].peak_mib > 10
        assert "MiB peak" in results[f"initial: {stage}"].line()
    assert "x the keyed floor" in results["initial: pipeline (3 stages)"].line()


def test_bench_command_prints_json_for_machines(capsys):
    assert main(["--scale", "0.01", "--json", "--no-incremental"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scale"] == 0.01
    assert report["ratio_to_keyed_floor"] > 0
    names = [m["name"] for m in report["measurements"]]
    assert "floor, keyed" in names and "initial: pipeline (3 stages)" in names


def test_bench_command_prints_a_line_per_measurement(capsys):
    assert main(["--scale", "0.01", "--no-incremental"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Benchmark at scale 0.01")
    assert "floor, keyed" in out and "initial: pipeline (3 stages)" in out


def test_a_failed_stage_stops_the_bench_with_its_last_line_not_a_trace(capsys):
    assert main(["--scale", "0.01", "--no-incremental", "--set", "PART_ROWS=many"]) == 1
    err = capsys.readouterr().err
    assert "bench stopped: StageFailed: extract failed:" in err
    assert "PART_ROWS must be a whole number, got 'many'" in err
    assert "Traceback" not in err and "--verbose" in err


def test_a_failed_stage_shows_its_trace_with_verbose(capsys):
    with pytest.raises(bench_module.StageFailed):
        main(["--scale", "0.01", "--no-incremental", "--set", "PART_ROWS=many", "--verbose"])
    assert "Traceback" in capsys.readouterr().err


def test_too_little_disk_for_the_scale_is_said_before_the_bench_starts(tmp_path):
    assert bench_module._disk_warning(tmp_path, 0.01) is None
    warning = bench_module._disk_warning(tmp_path, 10**9)
    assert warning is not None and "scale 1e+09 needs about" in warning
