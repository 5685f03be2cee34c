"""iDDS-style steering containers: the exact files, the placeholders, the limits, and
every way a user's program can go wrong, run as real processes through the ``process``
runtime with the example programs in ``tests/e2e/idds_steering``."""

from __future__ import annotations

import asyncio
import json
import math
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from services.steering import container
from services.steering.container import (
    ContainerResult,
    check_workdir_root,
    run_segmented_steering_container,
    run_steering_container,
)
from services.steering.idds_format import SegmentInput, substitute_exec
from shared.domain.models import Loss, Point, PointStatus
from shared.runtime import open_runtime
from shared.searchspace import (
    SearchSpace,
    canonical_key,
    parse_search_space,
    to_phpo,
    validate_point,
)

PROGRAMS = Path(__file__).resolve().parents[1] / "e2e" / "idds_steering"
RUNTIME = open_runtime("process")

SPACE = parse_search_space(
    {
        "x": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}},
        "n": {"method": "uniformint", "dimension": {"low": 1, "high": 5}},
        "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh"]}},
    }
)
SPACE_IDDS = {
    "x": {"type": "Scalar", "bounds": [0.0, 1.0]},
    "n": {"type": "Scalar", "bounds": [1, 5], "integer": True},
    "act": {"type": "Choice", "params": {"choices": ["relu", "tanh"]}},
}
OTHER_SPACE = parse_search_space(
    {
        "lr": {"type": "Log", "bounds": [1e-4, 1e-1]},
        "layers": {"type": "Choice", "params": {"choices": [1, 2, 3]}},
    }
)
OTHER_SPACE_IDDS = {
    "lr": {"type": "Log", "bounds": [1e-4, 1e-1]},
    "layers": {"type": "Choice", "params": {"choices": [1, 2, 3]}},
}


def program(name: str, *args: str) -> str:
    """An exec string running one of the example programs with the plain interpreter."""
    return " ".join(["python3", shlex.quote(str(PROGRAMS / name)), *args])


STANDARD_ARGS = ("--in=%IN", "--out=%OUT", "--n=%NUM_POINTS", "--max=%MAX_POINTS")


def misbehave(mode: str, *extra: str) -> str:
    return program("misbehave.py", mode, *STANDARD_ARGS, *extra)


def point(
    index: int,
    params: dict[str, Any],
    status: PointStatus = PointStatus.EVALUATED,
    loss: Loss | None = None,
    segment: str = "main",
) -> Point:
    return Point(
        id=f"task-1.{segment}.{index}",
        task_id="task-1",
        segment=segment,
        index=index,
        params=params,
        key=canonical_key(params),
        status=status,
        loss=loss,
    )


def evaluated(count: int) -> list[Point]:
    return [
        point(i, {"x": i / 100, "n": 1 + i % 5, "act": "relu"}, loss=float(i)) for i in range(count)
    ]


async def steer(
    tmp_path: Path,
    exec_: str,
    history: list[Point] | None = None,
    num_points: int = 3,
    max_points: int = 10,
    **options: Any,
) -> ContainerResult:
    options.setdefault("attempt_timeout", 60)
    return await run_steering_container(
        exec_,
        options.pop("image", None),
        RUNTIME,
        options.pop("space", SPACE),
        history or [],
        num_points,
        max_points,
        workdir_root=tmp_path / "work",
        **options,
    )


def assert_valid(space: SearchSpace, points: list[dict[str, Any]]) -> None:
    for params in points:
        assert validate_point(space, params) == [], params


def strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def work_dirs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "work").iterdir())


# --- the input file ------------------------------------------------------------------


async def test_input_file_holds_every_point_with_its_loss_in_the_idds_form(
    tmp_path: Path,
) -> None:
    seen = tmp_path / "seen.json"
    history = [
        point(3, {"x": 0.4, "n": 4, "act": "tanh"}, PointStatus.UNEVALUATED),
        point(0, {"x": 0.1, "n": 1, "act": "relu"}, loss=0.3),
        point(1, {"x": 0.2, "n": 2, "act": "tanh"}, PointStatus.FAILED, loss=1e10),
        point(2, {"x": 0.3, "n": 3, "act": "relu"}, PointStatus.PENDING),
        point(4, {"x": 0.5, "n": 5, "act": "relu"}, PointStatus.FAILED),
        point(5, {"x": 0.6, "n": 1, "act": "tanh"}, loss=[0.1, 0.2]),
        point(6, {"x": 0.7, "n": 2, "act": "relu"}, loss=math.nan),
    ]
    result = await steer(
        tmp_path,
        f"cp %IN {shlex.quote(str(seen))} && echo [] > %OUT",
        history,
        failed_loss=5e9,
    )
    assert result.ok, result.reason
    text = seen.read_text()
    assert strict_json(text) == {
        "points": [
            [{"x": 0.1, "n": 1, "act": "relu"}, 0.3],
            [{"x": 0.2, "n": 2, "act": "tanh"}, 1e10],  # the stored large loss
            [{"x": 0.3, "n": 3, "act": "relu"}, None],
            [{"x": 0.4, "n": 4, "act": "tanh"}, None],
            [{"x": 0.5, "n": 5, "act": "relu"}, 5e9],  # failed without a stored loss
            [{"x": 0.6, "n": 1, "act": "tanh"}, [0.1, 0.2]],
            [{"x": 0.7, "n": 2, "act": "relu"}, 5e9],  # NaN has no JSON form
        ],
        "opt_space": SPACE_IDDS,
    }
    assert list(json.loads(text)) == ["points", "opt_space"]
    assert result.opt_space_form == "idds"


async def test_an_empty_history_gives_an_empty_points_list(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    result = await steer(tmp_path, f"cp %IN {shlex.quote(str(seen))} && echo [] > %OUT")
    assert result.ok, result.reason
    assert json.loads(seen.read_text()) == {"points": [], "opt_space": SPACE_IDDS}


async def test_opt_space_is_in_the_phpo_form_when_the_idds_form_cannot_hold_it(
    tmp_path: Path,
) -> None:
    space = parse_search_space(
        {
            "x": {"method": "normal", "dimension": {"mu": 0, "sigma": 1}},
            "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh"]}},
        }
    )
    seen = tmp_path / "seen.json"
    result = await steer(
        tmp_path, f"cp %IN {shlex.quote(str(seen))} && echo [] > %OUT", space=space
    )
    assert result.ok, result.reason
    assert result.opt_space_form == "phpo"
    assert json.loads(seen.read_text())["opt_space"] == to_phpo(space)

    forced = await steer(tmp_path, "echo [] > %OUT", space=space, opt_space_form="idds")
    assert not forced.ok
    assert "x.method: normal has no iDDS form" in forced.reason
    assert forced.attempts == 0


async def test_opt_space_form_may_be_forced_to_phpo(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    result = await steer(
        tmp_path, f"cp %IN {shlex.quote(str(seen))} && echo [] > %OUT", opt_space_form="phpo"
    )
    assert result.opt_space_form == "phpo"
    assert json.loads(seen.read_text())["opt_space"] == to_phpo(SPACE)


async def test_segmented_input_carries_model_ids(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    segments = [
        SegmentInput(
            model_id=1,
            space=OTHER_SPACE,
            history=[point(0, {"lr": 0.01, "layers": 2}, loss=0.7, segment="b")],
            num_points=1,
        ),
        SegmentInput(
            model_id=0,
            space=SPACE,
            history=[
                point(1, {"x": 0.2, "n": 2, "act": "tanh"}, PointStatus.PENDING, segment="a"),
                point(0, {"x": 0.1, "n": 1, "act": "relu"}, loss=0.3, segment="a"),
            ],
            num_points=1,
        ),
    ]
    result = await run_segmented_steering_container(
        f"cp %IN {shlex.quote(str(seen))} && echo [] > %OUT",
        None,
        RUNTIME,
        segments,
        10,
        workdir_root=tmp_path / "work",
        attempt_timeout=60,
    )
    assert result.ok, result.reason
    assert strict_json(seen.read_text()) == {
        "points": [
            [[0, {"x": 0.1, "n": 1, "act": "relu"}], 0.3],
            [[0, {"x": 0.2, "n": 2, "act": "tanh"}], None],
            [[1, {"lr": 0.01, "layers": 2}], 0.7],
        ],
        "opt_space": [
            {"model_id": 0, "search_space": SPACE_IDDS},
            {"model_id": 1, "search_space": OTHER_SPACE_IDDS},
        ],
    }
    # [] ends model 1's search (no point open); model 0 still has one open: nothing new yet
    assert result.segments[1].container_ended and result.segments[1].search_over
    assert result.segments[0].waiting and not result.segments[0].search_over
    assert not result.search_over


# --- placeholders --------------------------------------------------------------------


def test_placeholders_are_replaced_once_and_as_whole_names() -> None:
    spec = "run --n=%NUM_POINTS --max=%MAX_POINTS --in=$PWD/%IN --out=$PWD/%OUT"
    assert substitute_exec(spec, num_points=3, max_points=10) == (
        "run --n=3 --max=10 --in=$PWD/idds_input.json --out=$PWD/output.json"
    )
    assert substitute_exec("a %IN_DATA %IN %INx", num_points=1, max_points=1) == (
        "a %IN_DATA idds_input.json %INx"
    )
    assert substitute_exec("x %IN", num_points=1, max_points=1, in_file="%OUT") == "x %OUT"
    assert substitute_exec("x %OUT", num_points=1, max_points=1, out_file="my out.json") == (
        "x 'my out.json'"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--n=%NUM_POINTS", "--max=%MAX_POINTS", "--in=$PWD/%IN", "--out=$PWD/%OUT"),
        STANDARD_ARGS,
        ("%IN", "%OUT", "%NUM_POINTS", "%MAX_POINTS"),
        ('"--in=$PWD/%IN"', "'--out=%OUT'", "--n", "%NUM_POINTS", "--max", "%MAX_POINTS"),
    ],
    ids=["spec-example", "options", "positional", "user-quoted"],
)
async def test_a_good_program_gives_valid_points(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = await steer(tmp_path, program("random_search.py", *args), evaluated(2))
    assert result.ok, result.reason
    assert len(result.points) == 3
    assert_valid(SPACE, result.points)
    assert not result.search_over
    assert result.warnings == ()
    assert result.attempts == 1
    assert work_dirs(tmp_path) == []  # nothing left behind


# --- limits, the end of the search, duplicates ---------------------------------------


async def test_at_most_the_room_left_under_max_points(tmp_path: Path) -> None:
    result = await steer(
        tmp_path, program("random_search.py", *STANDARD_ARGS), evaluated(8), num_points=5
    )
    assert result.ok, result.reason
    assert len(result.points) == 2
    assert result.search_over  # maxPoints reached with these two
    assert not result.segments[0].container_ended


async def test_extra_points_are_dropped_with_a_warning(tmp_path: Path) -> None:
    result = await steer(tmp_path, misbehave("too_many"), evaluated(7), num_points=5)
    assert result.ok, result.reason
    assert len(result.points) == 3  # min(5, 10 - 7)
    assert_valid(SPACE, result.points)
    assert result.warnings == (
        "47 point(s) beyond min(%NUM_POINTS, %MAX_POINTS - points so far) = 3, dropped",
    )


async def test_an_empty_list_ends_the_search(tmp_path: Path) -> None:
    result = await steer(tmp_path, misbehave("empty"), evaluated(3))
    assert result.ok, result.reason
    assert result.points == []
    assert result.search_over
    assert result.segments[0].container_ended


async def test_nothing_runs_when_no_point_may_be_added(tmp_path: Path) -> None:
    idle = await steer(tmp_path, "exit 1", evaluated(3), num_points=0)
    assert idle.ok and idle.attempts == 0 and idle.points == [] and not idle.search_over
    full = await steer(tmp_path, "exit 1", evaluated(10))
    assert full.ok and full.attempts == 0 and full.search_over
    assert work_dirs(tmp_path) == []


async def test_duplicates_of_open_points_are_dropped(tmp_path: Path) -> None:
    history = [
        point(0, {"x": 0.1, "n": 1, "act": "relu"}, loss=0.5),
        point(1, {"x": 0.2, "n": 2, "act": "tanh"}, PointStatus.PENDING),
        point(2, {"x": 0.30000000000000004, "n": 3, "act": "relu"}, PointStatus.UNEVALUATED),
    ]
    result = await steer(tmp_path, misbehave("repeat_open"), history)
    assert result.ok, result.reason
    assert len(result.points) == 1
    assert canonical_key(result.points[0]) not in {p.key for p in history}
    assert result.warnings == ("2 point(s) equal to a point not yet evaluated, dropped",)
    assert not result.search_over  # the container proposed points: not the end


# --- failures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "fragments"),
    [
        (
            "exit1",
            [
                "the steering program exited with code 1",
                "last lines of its stderr:\n    Simulated crash: the optimiser could not converge",
                "last lines of its stdout:\n    misbehave exit1: run 3",
            ],
        ),
        ("invalid_json", ["output.json is not valid JSON: Expecting property name"]),
        ("not_a_list", ['must be a JSON list of new points ([] to end the search), got {"points"']),
        ("wrong_shape", ['output.json item 1 must be a point (a JSON object), got "a point"']),
        (
            "out_of_space",
            ["output.json item 2 {", "is not a point of the search space: x: 3.0 is outside"],
        ),
        ("no_output", ["exited with code 0 but wrote no output.json (%OUT)"]),
    ],
)
async def test_failures_are_retried_then_reported_readably(
    tmp_path: Path, mode: str, fragments: list[str]
) -> None:
    counter = tmp_path / "runs"
    exec_ = misbehave(mode, "--counter", shlex.quote(str(counter)))
    result = await steer(tmp_path, exec_, evaluated(2))
    assert not result.ok
    assert result.attempts == 3
    assert len(counter.read_text().splitlines()) == 3
    assert result.points == [] and not result.search_over
    reason = result.reason
    assert reason.startswith("the steering container failed 3 times; command: python3 ")
    for fragment in fragments:
        assert fragment in reason
    assert "Traceback" not in reason
    assert result.workdir is not None and f"kept for diagnosis: {result.workdir}" in reason
    kept = sorted(p.name for p in result.workdir.iterdir())
    assert [name for name in kept if not name.endswith(("stdout", "stderr"))] == [
        "attempt-1",
        "attempt-2",
        "attempt-3",
    ]
    assert (result.workdir / "attempt-3" / "idds_input.json").is_file()
    assert len(result.attempt_reasons) == 3


async def test_a_failure_that_goes_away_costs_only_an_attempt(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    exec_ = misbehave("flaky", "--fail-times", "2", "--counter", shlex.quote(str(counter)))
    result = await steer(tmp_path, exec_, evaluated(4))
    assert result.ok, result.reason
    assert result.attempts == 3
    assert len(result.points) == 3
    assert_valid(SPACE, result.points)
    assert work_dirs(tmp_path) == []


async def test_different_reasons_are_listed_per_attempt(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    exec_ = misbehave("flaky", "--fail-times", "1", "--counter", shlex.quote(str(counter)))
    result = await steer(tmp_path, exec_ + " && exit 2", evaluated(1), attempts=2)
    assert not result.ok
    assert "\nattempt 1: the steering program exited with code 3" in result.reason
    assert "\nattempt 2: the steering program exited with code 2" in result.reason


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def assert_all_gone(pids_file: Path) -> None:
    """Every pid in the file ends (a SIGKILL takes effect asynchronously; a killed
    orphan may stay a zombie until init reaps it, which ``alive`` counts as gone)."""
    pids = [int(pid) for pid in pids_file.read_text().split()]
    assert len(pids) == 2
    while any(map(alive, pids)):  # bounded by the test's timeout
        await asyncio.sleep(0.05)


async def test_the_timeout_kills_the_program_and_what_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # Long enough for the program to start and write its pids with the other core busy.
    result = await steer(
        tmp_path,
        misbehave("sleep", "--pids", shlex.quote(str(pids))),
        attempt_timeout=4,
        attempts=2,
    )
    assert not result.ok and result.attempts == 2
    assert "the steering program timed out after 4 s" in result.reason
    assert "misbehave sleep: run" in result.reason
    await assert_all_gone(pids)


async def test_a_program_ignoring_sigterm_is_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(container, "KILL_GRACE_SECONDS", 0.5)
    started = time.monotonic()
    result = await steer(tmp_path, "trap '' TERM; sleep 60", attempt_timeout=0.5, attempts=1)
    assert time.monotonic() - started < 20
    assert "timed out after 0.5 s" in result.reason


async def test_cancelling_a_round_stops_the_program_and_cleans_up(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    task = asyncio.create_task(steer(tmp_path, misbehave("sleep", "--pids", str(pids))))
    for _ in range(200):
        if pids.exists() and pids.read_text().strip():
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_all_gone(pids)
    assert work_dirs(tmp_path) == []


async def test_an_image_the_runtime_cannot_run_is_not_retried(tmp_path: Path) -> None:
    result = await steer(tmp_path, "echo [] > %OUT", image="docker://example.org/steer:1")
    assert not result.ok
    assert result.attempts == 0
    assert result.reason.startswith("the steering container cannot run on the process runtime")
    assert "ignore_image" in result.reason
    assert work_dirs(tmp_path) == []


async def test_the_tasks_files_are_written_next_to_the_input(tmp_path: Path) -> None:
    files = {
        "steer.py": (PROGRAMS / "random_search.py").read_text(),
        "output.json": '[{"x": 0.5, "n": 1, "act": "relu"}]',  # must not pass for %OUT
    }
    result = await steer(tmp_path, "python3 steer.py %IN %OUT %NUM_POINTS %MAX_POINTS", files=files)
    assert result.ok, result.reason
    assert len(result.points) == 3
    stale = await steer(tmp_path, "true", files=files, attempts=1)
    assert "wrote no output.json" in stale.reason


def test_a_work_directory_the_shell_would_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no whitespace or glob characters"):
        check_workdir_root(tmp_path / "steer work")
    assert check_workdir_root(tmp_path / "steer") == (tmp_path / "steer").resolve()


# --- segmented tasks -----------------------------------------------------------------


async def test_a_segmented_round_gives_each_segment_its_points(tmp_path: Path) -> None:
    segments = [
        SegmentInput(model_id=0, space=SPACE, history=[], num_points=2),
        SegmentInput(
            model_id=1,
            space=OTHER_SPACE,
            history=[
                point(i, {"lr": 10 ** -(1 + i % 3), "layers": 1 + i % 3}, loss=1.0, segment="b")
                for i in range(9)
            ],
            num_points=2,
        ),
        SegmentInput(model_id=2, space=OTHER_SPACE, history=[], num_points=0),
    ]
    result = await run_segmented_steering_container(
        program("segmented_random.py", *STANDARD_ARGS),
        None,
        RUNTIME,
        segments,
        10,
        workdir_root=tmp_path / "work",
        attempt_timeout=60,
    )
    assert result.ok, result.reason
    first, second, third = (result.segments[i] for i in range(3))
    assert len(first.points) == 2 and not first.search_over
    assert_valid(SPACE, first.points)
    assert len(second.points) == 1 and second.search_over and not second.container_ended
    assert_valid(OTHER_SPACE, second.points)
    assert third.points == [] and not third.search_over
    assert result.warnings == (
        "model_id 2: 2 point(s) beyond min(%NUM_POINTS, %MAX_POINTS - points so far) = 0, dropped",
    )
    assert not result.search_over


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        ('[{"x": 0.5}]', 'item 1 must be [model_id, {point}] in a segmented task, got {"x"'),
        ('[[7, {"lr": 0.01, "layers": 1}]]', "item 1: model_id 7 is not a segment"),
        ('[[true, {"lr": 0.01, "layers": 1}]]', "item 1: model_id must be an integer"),
        (
            '[[0, {"lr": 0.01, "layers": 1}], [1, {"lr": 0.01, "layers": 4}]]',
            "item 2 (model_id 1) {",
        ),
    ],
)
async def test_segmented_output_shape_is_checked(
    tmp_path: Path, output: str, fragment: str
) -> None:
    segments = [
        SegmentInput(model_id=i, space=OTHER_SPACE, history=[], num_points=1) for i in range(2)
    ]
    result = await run_segmented_steering_container(
        f"echo {shlex.quote(output)} > %OUT",
        None,
        RUNTIME,
        segments,
        10,
        workdir_root=tmp_path / "work",
        attempt_timeout=60,
        attempts=1,
    )
    assert not result.ok
    assert fragment in result.reason
    assert result.reason.startswith("the steering container failed; command: echo ")
