"""Placeholders of ``evaluationExec`` (phpo): ``%SEGMENT_NAME`` and ``%IN_DATA``.

Values come from users, so each is shell-quoted before it lands in the command line,
and the substitution is a single pass: a value that itself contains ``%IN_DATA`` is
not expanded again.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

_PLACEHOLDER = re.compile(r"%(SEGMENT_NAME|IN_DATA)")


def substitute_exec(exec_: str, *, segment: str, training_files: Sequence[str]) -> str:
    values = {"SEGMENT_NAME": segment, "IN_DATA": ",".join(training_files)}
    return _PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group(1)]), exec_)
