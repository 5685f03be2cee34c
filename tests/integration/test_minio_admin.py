"""The storage service applies the per-user policies through MinIO's admin API.

No MinIO server can be installed here, so the admin API is a recording server that
answers as MinIO documents it (``/minio/admin/v3/...``); the requests are made by
MinIO's own Python client (``minio.MinioAdmin``), signed and, for the attach call,
encrypted as MinIO requires, and decrypted here with the same library. What this does
not show: that a real MinIO accepts them, and how its console then looks.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
import uvicorn
from fastapi import FastAPI, Request, Response
from minio.crypto import decrypt

from services.context import open_context
from services.storage.app import StorageService
from services.storage.policy import user_policy
from shared.config import StorageSettings, load
from shared.domain.models import Task
from shared.domain.taskconfig import TaskConfig

pytestmark = [pytest.mark.mongo, pytest.mark.s3]

ACCESS, SECRET = "minio-admin", "minio-admin-secret"


@pytest.fixture
async def minio_admin() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    calls: list[dict[str, Any]] = []
    app = FastAPI()

    @app.api_route("/minio/admin/v3/{command:path}", methods=["GET", "PUT", "POST"])
    async def admin(command: str, request: Request) -> Response:
        body = await request.body()
        calls.append(
            {
                "command": command,
                "query": dict(request.query_params),
                "body": body,
                "auth": request.headers.get("authorization", ""),
            }
        )
        if command == "user-info":
            if request.query_params["accessKey"] == "alice":
                return Response(json.dumps({"status": "enabled"}), media_type="application/json")
            return Response(json.dumps({"Code": "XMinioAdminNoSuchUser"}), status_code=404)
        if command == "idp/builtin/policy/attach":
            return Response(status_code=204)
        return Response(status_code=200)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://{ACCESS}:{SECRET}@127.0.0.1:{sock.getsockname()[1]}", calls
    finally:
        server.should_exit = True
        await task
        sock.close()


def decrypted(body: bytes) -> Any:
    stream = urllib3.HTTPResponse(body=io.BytesIO(body), preload_content=False)
    return json.loads(decrypt(stream, SECRET))


async def test_each_owner_gets_their_policy_once(
    minio_admin: tuple[str, list[dict[str, Any]]],
    mongo_db_url: str,
    s3_bucket_url: str,
    unique: str,
    tmp_path: Path,
) -> None:
    admin_url, calls = minio_admin
    settings = load(
        StorageSettings,
        mongo_url=mongo_db_url,
        artifacts_url=s3_bucket_url,
        minio_admin_url=admin_url,
        home=tmp_path,
    )
    ctx = await open_context(settings)
    try:
        for i, owner in enumerate(["alice", "bob", "we*rd"]):
            await ctx.store.tasks.insert(
                Task(id=f"t{i}", owner=owner, config=TaskConfig(evaluationExec="run"))
            )
        service = StorageService(ctx, settings)
        await service.reconcile()
        written = {
            c["query"]["name"]: json.loads(c["body"])
            for c in calls
            if c["command"] == "add-canned-policy"
        }
        assert written == {
            "hpo-user-alice": user_policy("alice", unique),
            "hpo-user-bob": user_policy("bob", unique),
        }
        attached = [
            decrypted(c["body"]) for c in calls if c["command"] == "idp/builtin/policy/attach"
        ]
        assert attached == [{"policies": ["hpo-user-alice"], "user": "alice"}]  # bob: no user
        assert all(c["auth"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS}/") for c in calls)

        before = len(calls)
        await service.reconcile()
        assert len(calls) == before  # applied once per owner
    finally:
        await ctx.close()
