"""Static checks of statemachine/pipeline.asl.json: the one definition CDK deploys and the
local runner executes. Every stage is retried and caught the same way, every failure
reaches the one alert, and the placeholders are exactly the documented set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from totes.contract import (
    PLACEHOLDERS,
    DefinitionError,
    placeholders_in,
    read_definition,
    substitute,
)
from totes.contract import STAGE_STATES as CONTRACT_STAGE_STATES
from totes.pipeline.db import DatabaseUnavailableError
from totes.pipeline.errors import UndeliverableBatchError
from totes.pipeline.lake import DamagedObjectError
from totes.pipeline.warehouse_setup import NewerWarehouseError

# Stages that connect to a database, whose unreachability is worth retrying.
STAGE_STATES = tuple(CONTRACT_STAGE_STATES.values())
DATABASE_STAGES = {"Extract", "Load"}
TRANSIENT_LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
VALUES = {
    "ExtractFunctionArn": "arn:aws:lambda:eu-west-2:111122223333:function:totes-extract",
    "TransformFunctionArn": "arn:aws:lambda:eu-west-2:111122223333:function:totes-transform",
    "LoadFunctionArn": "arn:aws:lambda:eu-west-2:111122223333:function:totes-load",
    "AlertTopicArn": "arn:aws:sns:eu-west-2:111122223333:totes-alerts",
    "RetryIntervalSeconds": 7,
    "ExecutionTimeoutSeconds": 1800,
    "Region": "eu-west-2",
    "RunbookUrl": "https://example.com/docs/runbooks.md",
}
# The Lambda tasks: the three stages, and the replay (the load function, rebuilding).
LAMBDA_TASKS = {**{state: state for state in STAGE_STATES}, "Replay": "Load"}
# The transform's fan-out: its plan (top level) and its Map (whose iterations are Tasks of
# their own), both calling the transform function and caught into its alert path.
FAN_OUT_TASKS = {
    "Transform: finish": "Transform",
    "Transform parts": "Transform",
    "Load: merge": "Load",
    "Stage parts": "Load",
}
MAPS = {"Transform parts": "Transform", "Stage parts": "Load"}


@pytest.fixture(scope="module")
def template() -> str:
    return read_definition()


@pytest.fixture(scope="module")
def definition(template: str) -> dict:
    return json.loads(substitute(template, VALUES))


@pytest.fixture(scope="module")
def states(definition: dict) -> dict[str, dict]:
    return definition["States"]


def successors(state: dict) -> list[str]:
    """Every state this one can go to (Next, Choice branches, Default, Catch targets)."""
    targets = [state[key] for key in ("Next", "Default") if key in state]
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    targets += [catcher["Next"] for catcher in state.get("Catch", [])]
    return targets


def paths_from(states: dict[str, dict], start: str) -> list[list[str]]:
    """Every path from ``start`` to a terminal state (the definition has no loops)."""
    state = states[start]
    nexts = successors(state)
    if not nexts:
        return [[start]]
    return [[start, *rest] for n in nexts for rest in paths_from(states, n)]


def test_placeholders_are_exactly_the_documented_set(template: str) -> None:
    assert placeholders_in(template) == PLACEHOLDERS
    # Nothing that looks like a placeholder is left after substitution.
    assert "${" not in substitute(template, VALUES)


def test_substitution_refuses_missing_or_unknown_values(template: str) -> None:
    with pytest.raises(DefinitionError, match="missing"):
        substitute(template, {k: v for k, v in VALUES.items() if k != "Region"})
    with pytest.raises(DefinitionError, match="unused"):
        substitute(template, {**VALUES, "Typo": "x"})


def test_substituted_definition_is_valid_asl(template: str) -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    AmazonStateLanguageParser.parse(substitute(template, VALUES))


def test_every_transition_targets_a_state_and_every_state_is_reachable(
    definition: dict, states: dict[str, dict]
) -> None:
    reachable, todo = set(), [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name in reachable:
            continue
        assert name in states, f"transition to a missing state {name!r}"
        reachable.add(name)
        todo += successors(states[name])
    assert reachable == set(states)


def test_execution_timeout_comes_from_the_placeholder(definition: dict) -> None:
    assert definition["TimeoutSeconds"] == VALUES["ExecutionTimeoutSeconds"]


def test_the_lambda_tasks_are_the_three_stages(states: dict[str, dict]) -> None:
    lambda_tasks = {
        name
        for name, state in states.items()
        if state["Type"] == "Task" and state["Resource"] == "arn:aws:states:::lambda:invoke"
    }
    assert lambda_tasks == set(LAMBDA_TASKS) | {"Transform: finish", "Load: merge"}
    for name, stage in {**LAMBDA_TASKS, **FAN_OUT_TASKS}.items():
        if name not in MAPS:
            assert states[name]["Parameters"]["FunctionName"] == VALUES[f"{stage}FunctionArn"]


def _unit_task(states: dict[str, dict], name: str = "Transform parts") -> dict:
    processor = states[name]["ItemProcessor"]
    assert processor["ProcessorConfig"] == {"Mode": "INLINE"}
    return processor["States"][processor["StartAt"]]


def test_the_transform_fans_out_over_units_with_bounded_concurrency(
    states: dict[str, dict],
) -> None:
    transform = states["Transform"]
    assert transform["Parameters"]["Payload"] == {"fan_out": True}
    assert transform["Next"] == "Fan out the transform?"
    (fan_out,) = states["Fan out the transform?"]["Choices"]
    assert fan_out == {
        "Variable": "$.transform.fan_out",
        "BooleanEquals": True,
        "Next": "Transform parts",
    }
    assert states["Fan out the transform?"]["Default"] == "Load"  # the short path
    mapped = states["Transform parts"]
    assert mapped["ItemsPath"] == "$.transform.units"
    assert 1 <= mapped["MaxConcurrency"] <= 10
    assert mapped["ResultPath"] is None  # nothing per iteration is kept in the state
    assert mapped["Next"] == "Transform: finish"  # which writes each batch's manifest, last
    finish = states["Transform: finish"]
    assert finish["Parameters"]["Payload"] == {}
    assert finish["ResultPath"] == "$.transform" and finish["Next"] == "Load"
    task = _unit_task(states)
    assert task["Parameters"]["FunctionName"] == VALUES["TransformFunctionArn"]
    assert task["End"] is True
    assert set(task["ResultSelector"]) == {"unit.$"}
    (retrier,) = task["Retry"]
    assert retrier == states["Transform"]["Retry"][0]


def test_the_load_stages_big_batches_in_parallel_then_merges_each_in_one_call(
    states: dict[str, dict],
) -> None:
    load = states["Load"]
    assert load["Parameters"]["Payload"] == {"fan_out": True}
    assert load["Next"] == "Fan out the load?"
    (fan_out,) = states["Fan out the load?"]["Choices"]
    assert fan_out == {"Variable": "$.load.fan_out", "BooleanEquals": True, "Next": "Stage parts"}
    assert states["Fan out the load?"]["Default"] == "Anything to report?"  # the short path
    mapped = states["Stage parts"]
    assert mapped["ItemsPath"] == "$.load.parts"
    assert 1 <= mapped["MaxConcurrency"] <= 4  # warehouse sessions at once
    assert mapped["ResultPath"] is None
    assert mapped["Next"] == "Load: merge"
    merge = states["Load: merge"]
    assert merge["Parameters"]["Payload"] == {}  # one transaction per batch, as ever
    assert merge["ResultPath"] == "$.load" and merge["Next"] == "Anything to report?"
    task = _unit_task(states, "Stage parts")
    assert task["Parameters"]["FunctionName"] == VALUES["LoadFunctionArn"]
    assert task["Retry"] == load["Retry"]  # the database's unavailability included


@pytest.mark.parametrize("name", [*LAMBDA_TASKS, "Transform: finish", "Load: merge"])
def test_each_stage_has_the_same_retry_policy(states: dict[str, dict], name: str) -> None:
    (retrier,) = states[name]["Retry"]
    errors = set(retrier["ErrorEquals"])
    assert errors >= TRANSIENT_LAMBDA_ERRORS
    # Never retry everything: a bug or a bad batch fails the same way every time.
    assert not errors & {"States.ALL", "States.TaskFailed", "InjectedFailure"}
    stage = {**LAMBDA_TASKS, **FAN_OUT_TASKS}[name]
    assert (DatabaseUnavailableError.__name__ in errors) == (stage in DATABASE_STAGES)
    assert retrier["IntervalSeconds"] == VALUES["RetryIntervalSeconds"]
    assert retrier["MaxAttempts"] == 3
    assert retrier["BackoffRate"] == 2.0
    assert retrier["JitterStrategy"] == "FULL"


@pytest.mark.parametrize("name", [*LAMBDA_TASKS, *FAN_OUT_TASKS])
def test_each_stage_catches_everything_into_its_alert_path(
    states: dict[str, dict], name: str
) -> None:
    (catcher,) = states[name]["Catch"]
    stage = FAN_OUT_TASKS.get(name, name if name in STAGE_STATES else "Replay")
    assert catcher == {
        "ErrorEquals": ["States.ALL"],
        "ResultPath": "$.error",
        "Next": f"{stage} failed",
    }
    failed = states[catcher["Next"]]
    assert failed["Type"] == "Pass"
    assert failed["Parameters"]["stage"] == stage
    assert failed["Parameters"]["error.$"] == "$.error"
    assert "batch_id" in failed["Parameters"] or "batch_id.$" in failed["Parameters"]


@pytest.mark.parametrize("name", STAGE_STATES)
def test_every_failure_path_publishes_exactly_one_alert_then_fails(
    states: dict[str, dict], name: str
) -> None:
    for path in paths_from(states, f"{name} failed"):
        assert path.count("Publish alert") == 1, path
        assert states[path[-1]]["Type"] == "Fail", path
        assert not set(path) & set(STAGE_STATES), path


def test_the_only_failures_are_after_the_alert(states: dict[str, dict]) -> None:
    fails = [name for name, state in states.items() if state["Type"] == "Fail"]
    assert fails == ["Pipeline failed"]
    assert states["Publish alert"]["Next"] == "Pipeline failed"
    assert "Catch" not in states["Publish alert"]


def test_success_paths_never_touch_the_alert(definition: dict, states: dict[str, dict]) -> None:
    # From the start, following only Next/Choices/Default (no Catch), every end is a Succeed.
    def normal_paths(name: str) -> list[list[str]]:
        state = states[name]
        nexts = [state[k] for k in ("Next", "Default") if k in state]
        nexts += [c["Next"] for c in state.get("Choices", [])]
        if not nexts:
            return [[name]]
        return [[name, *rest] for n in nexts for rest in normal_paths(n)]

    paths = normal_paths(definition["StartAt"])
    transform = ("Read input", "Replay?", "Extract", "Transform", "Fan out the transform?")
    loads = [
        ("Load", "Fan out the load?"),
        ("Load", "Fan out the load?", "Stage parts", "Load: merge"),
    ]
    runs = [
        (*transform, *middle, *load, "Anything to report?")
        for middle in ((), ("Transform parts", "Transform: finish"))
        for load in loads
    ]
    replay = (
        "Read input", "Replay?", "Replay: nothing extracted", "Replay",
        "Replay: no stage warnings", "Anything to report?",
    )  # fmt: skip
    assert {tuple(p) for p in paths} == {
        *((*run, "Done") for run in runs),
        *((*run, "Publish warnings", "Done") for run in runs),
        (*replay, "Done"),
        (*replay, "Publish warnings", "Done"),
    }
    for path in paths:
        assert states[path[-1]]["Type"] == "Succeed"
        assert "Publish alert" not in path


def test_the_alert_is_readable(states: dict[str, dict]) -> None:
    publish = states["Publish alert"]
    assert publish["Resource"] == "arn:aws:states:::sns:publish"
    params = publish["Parameters"]
    assert params["TopicArn"] == VALUES["AlertTopicArn"]
    assert params["Subject.$"].startswith("States.Format(")
    message = params["Message.$"]
    for needed in (
        "$.stage",
        "$.error.Error",
        "$.detail.text",  # the Lambda errorMessage, not the raw JSON Cause
        "$$.Execution.Name",
        "$.batch_id",
        "$.advice.text",  # what to do: retrying helps, or a person must act
        "${RunbookUrl}".replace("${RunbookUrl}", VALUES["RunbookUrl"]),
        "$$.Execution.Id",
        f"https://{VALUES['Region']}.console.aws.amazon.com/states/home?region={VALUES['Region']}",
    ):
        assert needed in message
    # Every {} in the template has an argument.
    template = re.match(r"States\.Format\('(.*)', (.*)\)$", message, re.S)
    assert template is not None
    assert template.group(1).count("{}") == len(template.group(2).split(", "))


def test_every_way_to_the_alert_sets_the_detail_text(states: dict[str, dict]) -> None:
    # The message reads $.detail.text: each path into Publish alert must have set it.
    for name in (*STAGE_STATES, "Replay"):
        for path in paths_from(states, f"{name} failed"):
            before = path[: path.index("Publish alert")]
            assert any(states[s].get("ResultPath") == "$.detail" for s in before), path


def test_the_state_data_stays_small(states: dict[str, dict]) -> None:
    # Each stage keeps only the small fields of its result (keys, ids, counts).
    assert set(states["Extract"]["ResultSelector"]) == {
        "batch_id.$",
        "rows.$",
        "tables.$",
        "changed.$",
        "warnings.$",
    }
    for name, stage in LAMBDA_TASKS.items():
        assert states[name]["ResultPath"] == f"$.{stage.lower()}"
    assert set(states["Transform"]["ResultSelector"]) == {
        "batch_ids.$", "rows.$", "quarantined.$", "warnings.$", "fan_out.$", "units.$",
    }  # fmt: skip
    assert states["Transform: finish"]["ResultSelector"] == {
        k: v
        for k, v in states["Transform"]["ResultSelector"].items()
        if k[:-2] not in ("fan_out", "units")
    }


def _subclasses(cls: type) -> set[str]:
    return {sub.__name__ for sub in cls.__subclasses__()} | {
        name for sub in cls.__subclasses__() for name in _subclasses(sub)
    }


def test_every_undeliverable_batch_error_gets_the_skip_advice(states: dict[str, dict]) -> None:
    # Importing the stages defines every subclass.
    import totes.pipeline.load
    import totes.pipeline.transform  # noqa: F401

    choice = states["Can a retry help?"]["Choices"][0]
    named = {rule["StringEquals"] for rule in choice["Or"]}
    assert named == {UndeliverableBatchError.__name__} | _subclasses(UndeliverableBatchError)
    assert choice["Next"] == "Advice: undeliverable batch"
    advice = states["Advice: undeliverable batch"]["Result"]["text"]
    assert "totes skip" in advice and "--reason" in advice


def test_a_newer_warehouse_gets_the_advice_to_deploy_the_newer_version(
    states: dict[str, dict],
) -> None:
    choices = states["Can a retry help?"]["Choices"]
    (newer,) = [c for c in choices if c.get("StringEquals") == NewerWarehouseError.__name__]
    advice = states[newer["Next"]]["Result"]
    assert "deployed again" in advice["text"] and "Nothing is lost" in advice["text"]
    assert advice["anchor"] == "#alert-failed-at-load"


def test_a_damaged_lake_object_gets_the_advice_to_restore_it(states: dict[str, dict]) -> None:
    choices = states["Can a retry help?"]["Choices"]
    (damaged,) = [c for c in choices if c.get("StringEquals") == DamagedObjectError.__name__]
    advice = states[damaged["Next"]]["Result"]["text"]
    assert "Restore its earlier version" in advice and "Skipping its batch does not help" in advice


def test_a_run_with_warnings_sends_one_warning_email(states: dict[str, dict]) -> None:
    publish = states["Publish warnings"]
    assert publish["Resource"] == "arn:aws:states:::sns:publish"
    message = publish["Parameters"]["Message.$"]
    for needed in ("$.extract.warnings", "$.transform.warnings", "$.load.warnings"):
        assert needed in message
    assert publish["Next"] == "Done"


def test_every_runbook_link_in_the_emails_has_its_section(definition: dict) -> None:
    runbooks = (Path(__file__).resolve().parents[2] / "docs" / "runbooks.md").read_text()
    headings = re.findall(r"^#+\s+(.+?)\s*$", runbooks, re.MULTILINE)
    anchors = {"#" + re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
    text = json.dumps(definition)
    used = set(re.findall(r'"anchor": "(#[a-z-]+)"', text))
    used |= set(re.findall(r"runbooks\.md(#[a-z-]+)", text))
    assert len(used) >= 7
    assert used <= anchors, used - anchors
