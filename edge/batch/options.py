"""Batch options of one compute class: where the scheduler runs that class's jobs.

A site whose classes are different partitions (or queues, accounts, QOS levels, node
features) of one cluster says so per class in its config::

    [[compute_classes]]
    name = "a100"
    gpus_per_node = 4
    batch = { partition = "gpu-a100", qos = "hpo", constraint = "a100&ib" }

When the harvester submits a job the broker assigned to that class, these options
replace the ``[batch]`` table's (``partition``/``queue``, ``account``) or add to them
(``qos``, ``constraint``, ``directives`` after the table's own directive lines). What
each batch system can express (:func:`unsupported`) is checked when the config is
read, so a class never asks a scheduler for something it would silently drop:

============  =============  ==========  ==============  ====================
option        slurm          sge         lsf             pbs
============  =============  ==========  ==============  ====================
partition     --partition    -           -               -
queue         -              -q          -q              -q
account       --account      -A          -P              -A
qos           --qos          -           -               -
constraint    --constraint   -           -R "select[..]" -
directives    #SBATCH ...    #$ ...      #BSUB ...       #PBS ...
============  =============  ==========  ==============  ====================

Grid Engine and PBS express node features as resources (``-l ...``): put those in
``directives``. A directive is one option (it starts with ``-``) on one line, with no
control character, so it can neither end the directive block nor start a shell line.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.batch.script import DirectiveName

Constraint = Annotated[
    str, Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_.,:&|()\[\]*!=-]+$")
]
"""A Slurm feature expression (``a100&ib``, ``[rack1|rack2]``) or an LSF select string:
no spaces, quotes or shell characters."""

_SUPPORT: dict[str, frozenset[str]] = {
    "slurm": frozenset({"partition", "account", "qos", "constraint", "directives"}),
    "sge": frozenset({"queue", "account", "directives"}),
    "lsf": frozenset({"queue", "account", "constraint", "directives"}),
    "pbs": frozenset({"queue", "account", "directives"}),
    "local": frozenset(),
}
_HINT = {
    "partition": "Grid Engine, LSF and PBS have queues: use 'queue'",
    "queue": "Slurm has partitions: use 'partition'",
    "qos": "put the scheduler's own option in 'directives'",
    "constraint": "put the node resource in 'directives' (e.g. -l with the site's complex)",
}


class ClassBatchOptions(BaseModel):
    """The ``batch`` table of one ``[[compute_classes]]`` entry; every key optional."""

    model_config = ConfigDict(extra="forbid")

    partition: DirectiveName | None = None
    """Slurm: the partition the class's nodes are in."""
    queue: DirectiveName | None = None
    """Grid Engine, LSF, PBS: the queue."""
    account: DirectiveName | None = None
    qos: DirectiveName | None = None
    """Slurm: the QOS."""
    constraint: Constraint | None = None
    """Slurm ``--constraint`` (node features), LSF ``-R "select[...]"``."""
    directives: list[str] = Field(default_factory=list, max_length=64)
    """Extra directive lines without the prefix, after the ``[batch]`` table's."""

    @field_validator("directives")
    @classmethod
    def _one_option_per_line(cls, lines: list[str]) -> list[str]:
        for line in lines:
            if any(ord(c) < 32 or ord(c) == 127 for c in line):
                raise ValueError(
                    f"{line!r} holds a line break or control character: give one directive "
                    "per entry"
                )
            if not line.startswith("-") or len(line) > 1024:
                raise ValueError(
                    f"{line!r} is not a scheduler option: a directive starts with '-', "
                    "e.g. '--exclusive' or '-l h_vmem=4G'"
                )
        return lines

    def set_fields(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name)]


def unsupported(kind: str, options: ClassBatchOptions) -> str | None:
    """Why ``kind`` cannot take ``options`` (naming the option); None if it can."""
    allowed = _SUPPORT.get(kind, frozenset())
    for name in options.set_fields():
        if name not in allowed:
            if kind == "local":
                return "the local batch system starts processes and takes no batch options"
            hint = _HINT.get(name, "")
            return f"{name!r} is not an option of {kind}" + (f": {hint}" if hint else "")
    return None
