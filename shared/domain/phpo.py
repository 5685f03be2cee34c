"""phpo's option set: every option PanDA's ``phpo`` takes, and what each does here.

A user's ``--loadJson`` file and command line come from phpo, so ``hpo submit`` and the
task config accept every phpo option under phpo's own names (the option's ``dest``,
which is also the key in a ``--loadJson`` file). Each option is one of:

* ``task``: part of the task config, acted on by the services;
* ``client``: acted on by the ``hpo`` client (reading and dumping files, dry runs,
  verbosity, help, version); the server accepts the key in a config and ignores it;
* ``ignored``: meaningful only inside PanDA (grid proxies, ALRB, working groups);
  accepted with a one-line warning saying it has no effect here, never refused.

The table is the single source for the CLI's options and help, the ``--helpGroup``
listing, the server's warnings and the reference table in docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Group = Literal["config", "input", "output", "submit", "expert"]
Kind = Literal["task", "client", "ignored"]
Value = Literal["str", "int", "flag", "path"]

GROUPS: Final[dict[Group, str]] = {
    "input": "input dataset(s)/files/format",
    "output": "output dataset/files",
    "config": "single configuration file to set multiple options",
    "submit": "job submission/site/retry",
    "expert": "for experts/developers only",
}
"""phpo's option groups, in the order ``--helpGroup ALL`` prints them."""


@dataclass(frozen=True)
class PhpoOption:
    dest: str
    """phpo's name for the value: the key in a ``--loadJson`` file."""
    flags: tuple[str, ...]
    group: Group
    kind: Kind
    value: Value
    help: str
    """What the option does here (help text, warnings, docs)."""

    @property
    def flag(self) -> str:
        """The spelling shown in help and warnings."""
        return self.flags[0]


def _opt(dest: str, group: Group, kind: Kind, value: Value, help_: str, *flags: str) -> PhpoOption:
    return PhpoOption(dest, flags or (f"--{dest}",), group, kind, value, help_)


OPTIONS: Final[tuple[PhpoOption, ...]] = (
    _opt("version", "config", "client", "flag", "print the version of the hpo client and exit"),
    _opt(
        "loadJson",
        "config",
        "client",
        "path",
        "read the task's options from a JSON object whose keys are these options' names; "
        "options given on the command line override the file",
    ),
    _opt(
        "dumpJson",
        "config",
        "client",
        "path",
        "write every option given and the submission's outcome (returnCode, returnOut, "
        "jediTaskID = the task id) to this JSON file",
    ),
    _opt(
        "nParallelEvaluation",
        "config",
        "task",
        "int",
        "points evaluated at the same time (1 by default)",
    ),
    _opt(
        "maxPoints",
        "config",
        "task",
        "int",
        "points to evaluate in the whole search, per segment in a segmented task (10 by default)",
    ),
    _opt(
        "maxEvaluationJobs",
        "config",
        "task",
        "int",
        "evaluation jobs the task may run in all, retries included (2 x maxPoints x segments "
        "by default); a task that runs out of jobs before its points are evaluated fails",
    ),
    _opt(
        "maxPointsPerEvaluationJob",
        "config",
        "task",
        "int",
        "points one evaluation job takes (only 1 is supported so far)",
    ),
    _opt(
        "nPointsPerIteration",
        "config",
        "task",
        "int",
        "points one steering round makes (2 by default); a steering program gets it as %NUM_POINTS",
    ),
    _opt(
        "minUnevaluatedPoints",
        "config",
        "task",
        "int",
        "start the next steering round when fewer points than this are waiting or running "
        "(0 by default: when none is)",
    ),
    _opt(
        "steeringContainer",
        "config",
        "task",
        "str",
        "image the steering program runs in (needs steeringExec)",
    ),
    _opt(
        "steeringExec",
        "config",
        "task",
        "str",
        "your own iDDS-style steering program instead of a built-in optimiser; %IN, %OUT, "
        "%NUM_POINTS and %MAX_POINTS are replaced",
    ),
    _opt(
        "searchSpaceFile",
        "config",
        "task",
        "str",
        "JSON file (in the submitting directory) with the search space; with "
        "segmentSpecFile a list of spaces, or one space used for every segment",
    ),
    _opt(
        "evaluationContainer",
        "config",
        "task",
        "str",
        "image the evaluation runs in: one reference, or a map arch -> reference; jobs go "
        "only to sites that declare they can run it",
    ),
    _opt(
        "evaluationExec",
        "config",
        "task",
        "str",
        "command line of the evaluation; %SEGMENT_NAME, %IN_DATA and %FLAGS are replaced",
    ),
    _opt(
        "evaluationInput",
        "config",
        "task",
        "str",
        "file the point's parameters are written to (input.json by default)",
    ),
    _opt(
        "evaluationTrainingData",
        "config",
        "task",
        "str",
        "file the list of training files is written to (input_ds.json by default)",
    ),
    _opt(
        "evaluationOutput",
        "config",
        "task",
        "str",
        "file the evaluation writes its loss to (output.json by default)",
    ),
    _opt(
        "evaluationMeta",
        "config",
        "task",
        "str",
        "metadata file the evaluation writes (a JSON object), kept as an artifact",
    ),
    _opt(
        "evaluationMetrics",
        "config",
        "task",
        "str",
        "metrics file the evaluation writes, kept as <segment>.<task>.<point>.metrics.tgz",
    ),
    _opt(
        "checkPointToSave",
        "config",
        "task",
        "str",
        "comma-separated files or directories of the work directory to snapshot for checkpointing",
    ),
    _opt(
        "checkPointToLoad",
        "config",
        "task",
        "str",
        "hand a restored checkpoint over as a tarball of this name instead of extracting it",
    ),
    _opt(
        "checkPointInterval",
        "config",
        "task",
        "int",
        "minutes between checkpoint snapshots (5 by default)",
    ),
    _opt(
        "alrbArgs",
        "config",
        "ignored",
        "str",
        "no effect here: there is no ALRB; the site's runtime starts the container",
    ),
    _opt(
        "architecture",
        "config",
        "task",
        "str",
        "CPU architecture the jobs need: amd64, arm64 or ppc64le, or phpo's "
        "#cpu_spec&gpu_spec form, of which only the CPU architecture is used",
    ),
    _opt(
        "segmentSpecFile",
        "config",
        "task",
        "str",
        "JSON file (in the submitting directory) listing the segments of a segmented "
        "task: [{'name': ..., 'files': [...]}, ...]",
    ),
    _opt(
        "verbose",
        "config",
        "client",
        "flag",
        "say what the client sends and receives",
        "-v",
        "--verbose",
    ),
    _opt(
        "trainingDS",
        "input",
        "task",
        "str",
        "training dataset; its name is handed to the evaluation in evaluationTrainingData",
    ),
    _opt(
        "outDS",
        "output",
        "task",
        "str",
        "name of the task's output dataset: the task is named after it (unless --name is "
        "given) and shows it, and `hpo list --outDS NAME` finds the task by it",
    ),
    _opt(
        "official",
        "output",
        "ignored",
        "flag",
        "no effect here: there are no official datasets",
    ),
    _opt(
        "site",
        "submit",
        "task",
        "str",
        "the site (or a comma-separated list of sites) the jobs may run at",
    ),
    _opt(
        "workingGroup",
        "submit",
        "ignored",
        "str",
        "no effect here: there are no working groups",
    ),
    _opt(
        "noSubmit",
        "submit",
        "client",
        "flag",
        "dry run: check the options and print what would be submitted, without submitting",
    ),
    _opt(
        "python3",
        "submit",
        "ignored",
        "flag",
        "no effect here: the client is always Python 3",
        "-3",
    ),
    _opt(
        "vomsRoles",
        "submit",
        "ignored",
        "str",
        "no effect here: the server takes a bearer token, not a grid proxy",
        "--voms",
    ),
    _opt(
        "noEmail",
        "submit",
        "ignored",
        "flag",
        "no effect here: no email is sent",
    ),
    _opt(
        "intrSrv",
        "expert",
        "ignored",
        "flag",
        "no effect here: the server is the one of --url (or HPO_URL)",
    ),
)
"""Every option of phpo (panda-client's ``PhpoScript.py``), in phpo's order."""

BY_DEST: Final[dict[str, PhpoOption]] = {o.dest: o for o in OPTIONS}
HELP_GROUP_HELP: Final = (
    "print the options of one group (input, output, config, submit, expert; any case), "
    "or of all of them with ALL"
)
CLIENT_KEYS: Final = frozenset(o.dest for o in OPTIONS if o.kind == "client") | {"helpGroup"}
IGNORED_KEYS: Final = frozenset(o.dest for o in OPTIONS if o.kind == "ignored")


def no_effect_warning(dest: str) -> str:
    """The one line said about an option that is accepted but does nothing here."""
    option = BY_DEST[dest]
    return f"{option.flag}: {option.help}"


def server_ignores(dest: str) -> str:
    """Why the server accepts ``dest`` in a config and does nothing with it."""
    if dest in IGNORED_KEYS:
        return no_effect_warning(dest)
    flag = BY_DEST[dest].flag if dest in BY_DEST else f"--{dest}"
    return f"{flag}: an option of the hpo client; it has no effect in a task config"


def group_help(group: str) -> str:
    """The text ``--helpGroup`` prints: one group's options, or every group's for ALL.

    Raises ValueError naming the groups for an unknown one.
    """
    wanted = group.strip().lower()
    if wanted != "all" and wanted not in GROUPS:
        raise ValueError(f"unknown option group {group!r}: use one of {', '.join(GROUPS)} or ALL")
    chosen = [g for g in GROUPS if wanted in ("all", g)]
    blocks = []
    for name in chosen:
        lines = [f"{name}:", f"  {GROUPS[name]}"]
        for option in (o for o in OPTIONS if o.group == name):
            flags = ", ".join(option.flags)
            metavar = "" if option.value == "flag" else f" {option.dest.upper()}"
            lines.append(f"  {flags}{metavar}")
            lines.append(f"      {option.help}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
