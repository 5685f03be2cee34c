"""``/api/v1/datasets``: a user's training datasets, uploaded through presigned URLs.

``PUT /datasets/{name}`` declares the files (name, size, sha256) and answers with a
presigned PUT URL for every part not yet in the store, so repeating it after an
interrupted upload resumes where it stopped; ``POST .../complete`` checks that every
part is there with its size and makes the dataset ``ready``. Another user's dataset is a
404, as for tasks. Bytes never pass through the api (except with a ``file://`` store,
whose presigned URLs the api serves).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import Ctx, CurrentUser, Settings
from services.storage.policy import UPLOAD_EXPIRY
from shared.artifacts import ArtifactStore
from shared.domain.datasets import (
    MAX_FILES,
    NAME_PATTERN,
    Dataset,
    DatasetFile,
    DatasetStatus,
    dataset_prefix,
    part_key,
    part_sizes,
)

router = APIRouter(prefix="/api/v1", tags=["datasets"])

Name = Annotated[str, Path(pattern=NAME_PATTERN, max_length=200)]


class DatasetDeclaration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: list[DatasetFile] = Field(min_length=1, max_length=MAX_FILES)


class DatasetView(BaseModel):
    name: str
    status: DatasetStatus
    size: int
    files: list[DatasetFile]
    part_size: int


class PartUpload(BaseModel):
    file: str
    part: int
    size: int
    url: str


class UploadPlan(BaseModel):
    dataset: DatasetView
    uploads: list[PartUpload]
    """The parts still missing from the store, each with a presigned PUT URL."""


def _view(dataset: Dataset) -> DatasetView:
    return DatasetView(
        name=dataset.name,
        status=dataset.status,
        size=dataset.size,
        files=dataset.files,
        part_size=dataset.part_size,
    )


async def _missing_parts(
    artifacts: ArtifactStore, dataset: Dataset
) -> list[tuple[DatasetFile, int, int]]:
    """(file, part number, part size) of every part not stored with its size."""
    stored = {
        info.key: info.size
        for info in await artifacts.list(dataset_prefix(dataset.owner, dataset.name))
    }
    missing = []
    for file in dataset.files:
        for number, size in enumerate(part_sizes(file.size, dataset.part_size), start=1):
            key = part_key(dataset.owner, dataset.name, file.sha256, number)
            if stored.get(key) != size:
                missing.append((file, number, size))
    return missing


async def _own(ctx: Ctx, owner: str, name: str) -> Dataset:
    dataset = await ctx.store.datasets.get_for_owner(owner, name)
    if dataset is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {name}")
    return dataset


@router.put("/datasets/{name}")
async def declare_dataset(
    name: Name, body: DatasetDeclaration, ctx: Ctx, user: CurrentUser, settings: Settings
) -> UploadPlan:
    names = [f.name for f in body.files]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body", "files"], "msg": f"file names repeated: {repeated[:5]}"}],
        )
    dataset = await ctx.store.datasets.declare(
        user.owner, name, body.files, part_size=settings.dataset_part_bytes
    )
    if dataset is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"dataset {name} is already uploaded with other files; remove it first "
            f"(hpo dataset rm {name})",
        )
    uploads = []
    if dataset.status != "ready":
        for file, number, size in await _missing_parts(ctx.artifacts, dataset):
            key = part_key(dataset.owner, dataset.name, file.sha256, number)
            url = ctx.artifacts.presign_put(key, UPLOAD_EXPIRY)
            uploads.append(PartUpload(file=file.name, part=number, size=size, url=url))
    return UploadPlan(dataset=_view(dataset), uploads=uploads)


@router.post("/datasets/{name}/complete")
async def complete_dataset(name: Name, ctx: Ctx, user: CurrentUser) -> DatasetView:
    dataset = await _own(ctx, user.owner, name)
    if dataset.status == "ready":
        return _view(dataset)
    missing = await _missing_parts(ctx.artifacts, dataset)
    if missing:
        first = ", ".join(f"{f.name} part {n}" for f, n, _ in missing[:3])
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{len(missing)} part(s) not uploaded yet ({first}); repeat the upload to resume",
        )
    await ctx.store.datasets.mark_ready(user.owner, name)
    return _view(await _own(ctx, user.owner, name))


@router.get("/datasets")
async def list_datasets(ctx: Ctx, user: CurrentUser) -> list[DatasetView]:
    return [_view(d) for d in await ctx.store.datasets.list_for_owner(user.owner)]


@router.get("/datasets/{name}")
async def get_dataset(name: Name, ctx: Ctx, user: CurrentUser) -> DatasetView:
    return _view(await _own(ctx, user.owner, name))


@router.delete("/datasets/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_dataset(name: Name, ctx: Ctx, user: CurrentUser) -> None:
    """The record first, so no new job is given the dataset, then its stored parts."""
    await _own(ctx, user.owner, name)
    await ctx.store.datasets.delete(user.owner, name)
    for info in await ctx.artifacts.list(dataset_prefix(user.owner, name)):
        await ctx.artifacts.delete(info.key)
