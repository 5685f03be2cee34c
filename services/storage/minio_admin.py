"""Per-user MinIO policies, applied through MinIO's admin API (``HPO_MINIO_ADMIN_URL``).

For every owner of a task, the storage service's reconcile pass (at start, then when a
new owner appears) writes the canned policy ``hpo-user-<owner>`` (:func:`user_policy`:
browse and download ``<bucket>/<owner>/...`` only) and attaches it to the MinIO user of
the same name when that user exists. Users are not created here: they come from the
site's identity provider or the MinIO admin (an OpenID or LDAP login gets the policy by
its name, through the provider's policy claim or ``mc admin policy attach``). A MinIO
that refuses a call costs a warning and a retry at the next pass.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote, urlsplit

from services.storage.policy import OWNER_FOR_POLICY, user_policy, user_policy_name
from shared.startup import StartupError

log = logging.getLogger(__name__)


def bucket_of(artifacts_url: str) -> str:
    parts = urlsplit(artifacts_url)
    if parts.scheme != "s3":
        raise StartupError("HPO_MINIO_ADMIN_URL needs an s3:// HPO_ARTIFACTS_URL (MinIO)")
    return parts.path.strip("/")


class MinioPolicies:
    def __init__(self, admin_url: str, bucket: str) -> None:
        from minio import MinioAdmin
        from minio.credentials.providers import StaticProvider

        parts = urlsplit(admin_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StartupError("HPO_MINIO_ADMIN_URL must be http(s)://ACCESS:SECRET@HOST:PORT")
        if not parts.username or parts.password is None:
            raise StartupError("HPO_MINIO_ADMIN_URL needs credentials: ACCESS:SECRET@HOST")
        self.bucket = bucket
        self.admin = MinioAdmin(
            endpoint=parts.netloc.rsplit("@", 1)[-1],
            credentials=StaticProvider(unquote(parts.username), unquote(parts.password)),
            secure=parts.scheme == "https",
        )
        self.applied: set[str] = set()

    async def reconcile(self, owners: set[str]) -> None:
        for owner in sorted(owners - self.applied):
            if not OWNER_FOR_POLICY.match(owner):
                log.warning("no MinIO policy for owner %r: not a plain name", owner)
                self.applied.add(owner)
                continue
            try:
                await asyncio.to_thread(self.apply, owner)
            except Exception as exc:
                log.warning("MinIO policy of %s not applied, retried later: %s", owner, exc)
                continue
            self.applied.add(owner)

    def apply(self, owner: str) -> None:
        name = user_policy_name(owner)
        self.admin.policy_add(name, policy=user_policy(owner, self.bucket))
        try:
            self.admin.user_info(owner)
        except Exception:
            log.info("MinIO policy %s written; no MinIO user %s to attach it to", name, owner)
            return
        self.admin.attach_policy([name], user=owner)
