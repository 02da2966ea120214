"""`make bench` measures every stage and the COPY floor (figures are printed, not asserted)."""

from __future__ import annotations

from totes.local.bench import bench, main


def test_bench_measures_each_stage_and_the_copy_floor(pg_server, tmp_path):
    tmp_path.chmod(0o755)
    results = {m.name: m for m in bench(pg_server, 0.01, tmp_path)}

    assert list(results) == [
        "seed",
        "COPY out + in (floor)",
        "extract",
        "transform",
        "load",
        "pipeline (3 stages)",
    ]
    seeded = results["seed"].rows
    assert results["COPY out + in (floor)"].rows == seeded == results["extract"].rows
    assert results["load"].rows == results["transform"].rows > seeded  # dim_date is generated
    for stage in ("extract", "transform", "load"):
        assert results[stage].peak_mib > 10
        assert stage in results[stage].line() and "MiB peak" in results[stage].line()


def test_bench_command_prints_a_line_per_measurement(capsys):
    assert main(["--scale", "0.01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Benchmark at scale 0.01")
    assert "COPY out + in (floor)" in out and "pipeline (3 stages)" in out
