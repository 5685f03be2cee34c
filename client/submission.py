"""Building a task submission the way phpo does: a ``--loadJson`` file, flags on top,
and the submitting directory's ``*.json *.sh *.py *.yaml`` files travelling along."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.jsonfile import JsonFileError, parse_json

TRAVELLING = ("*.json", "*.sh", "*.py", "*.yaml")
MAX_FILE_BYTES = 256 * 1024


class SubmissionInputError(ValueError):
    """The local input (config file or directory) cannot be turned into a submission."""


def load_json_config(path: Path) -> dict[str, Any]:
    try:
        data = parse_json(path.read_bytes())
    except FileNotFoundError:
        raise SubmissionInputError(f"--loadJson: no file {path}") from None
    except JsonFileError as exc:
        raise SubmissionInputError(f"--loadJson: {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SubmissionInputError(f"--loadJson: {path} must hold a JSON object")
    return data


def travelling_files(directory: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for pattern in TRAVELLING:
        for path in sorted(directory.glob(pattern)):
            if not path.is_file():
                continue
            if path.stat().st_size > MAX_FILE_BYTES:
                raise SubmissionInputError(
                    f"{path.name} is over {MAX_FILE_BYTES // 1024} KiB; put large inputs in "
                    "trainingDS instead of the submitting directory"
                )
            try:
                files[path.name] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise SubmissionInputError(f"{path.name} is not UTF-8 text") from None
    return files


def build_submission(
    config: dict[str, Any],
    overrides: dict[str, Any],
    directory: Path,
    *,
    name: str = "",
) -> dict[str, Any]:
    merged = {**config, **{k: v for k, v in overrides.items() if v is not None}}
    return {"name": name, "config": merged, "files": travelling_files(directory)}
