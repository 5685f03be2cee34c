"""The storage service: verifies what the edge says it uploaded.

The harvester uploads through presigned URLs and then confirms each object with its
size and sha256 (the api records the claim and publishes ``artifact.uploaded``). This
service checks the object really is in the store with that size and digest and marks the
registry entry verified or rejected; the reconcile pass re-checks any entry still
unverified, so a lost message only delays the check.

With ``HPO_MLFLOW_URL`` it also keeps a central MLflow server in step with every task
(:mod:`.mlflow_mirror`), and with ``HPO_MINIO_ADMIN_URL`` every user's MinIO policy
(:mod:`.minio_admin`).
"""

from __future__ import annotations

import hashlib
import logging

from services.consumer import BusConsumer
from services.context import Context
from services.storage import mlflow_mirror
from services.storage.minio_admin import MinioPolicies, bucket_of
from shared.artifacts import ArtifactNotFoundError
from shared.config import StorageSettings
from shared.domain.models import Artifact
from shared.messages import ArtifactUploaded, Message

log = logging.getLogger(__name__)


class StorageService(BusConsumer):
    name = "storage"
    routing_keys: tuple[str, ...] = ("artifact.uploaded",)

    def __init__(self, ctx: Context, settings: StorageSettings) -> None:
        super().__init__(ctx)
        self.settings = settings
        self.mlflow: mlflow_mirror.MlflowMirror | None = None
        if settings.mlflow_url:
            self.mlflow = mlflow_mirror.MlflowMirror(
                ctx, settings.mlflow_url, settings.mlflow_sync_interval
            )
            self.routing_keys = (*self.routing_keys, *mlflow_mirror.ROUTING_KEYS)
        self.policies: MinioPolicies | None = None
        if settings.minio_admin_url is not None:
            self.policies = MinioPolicies(
                settings.minio_admin_url.get_secret_value(), bucket_of(settings.artifacts_url)
            )

    async def on_message(self, message: Message) -> None:
        task_id = getattr(message, "task_id", None)
        if self.mlflow is not None and isinstance(task_id, str):
            self.mlflow.mark(task_id)
        if isinstance(message, ArtifactUploaded):
            artifact = await self.ctx.store.artifacts.get(message.artifact_id)
            if artifact is not None and artifact.verified is None:
                await self.verify(artifact)

    async def reconcile(self) -> None:
        for artifact in await self.ctx.store.artifacts.list_unverified():
            await self.verify(artifact)
        if self.mlflow is not None:
            await self.mlflow.reconcile()
        if self.policies is not None:
            await self.policies.reconcile(await self.ctx.store.stats.task_owners())

    async def verify(self, artifact: Artifact) -> None:
        ok, detail = await self._check(artifact)
        await self.ctx.store.artifacts.set_verified(artifact.id, ok, detail)
        if not ok:
            log.warning("artifact %s rejected: %s", artifact.key, detail)

    async def _check(self, artifact: Artifact) -> tuple[bool, str]:
        if artifact.size > self.settings.max_artifact_bytes:
            return False, f"{artifact.size} bytes is over the limit"
        info = await self.ctx.artifacts.stat(artifact.key)
        if info is None:
            return False, "no object under this key"
        if info.size != artifact.size:
            return False, f"size {info.size} differs from the declared {artifact.size}"
        try:
            data = await self.ctx.artifacts.get_bytes(artifact.key)
        except ArtifactNotFoundError:
            return False, "object vanished during verification"
        digest = hashlib.sha256(data).hexdigest()
        if digest != artifact.sha256:
            return False, "sha256 differs from the declared digest"
        return True, ""
