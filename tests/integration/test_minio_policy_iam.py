"""The per-user MinIO policies, evaluated by a real IAM policy evaluator: moto's S3
server with authorisation on, a user holding the generated policy, signed requests.

What moto evaluates (read in moto/iam/access_control.py): actions and resources with
wildcards, for SigV4-signed requests of IAM users. What it does not: conditions other
than StringEquals, and S3 request context keys such as ``s3:prefix``, so the
``ListOwnPrefix`` statement's condition is not exercised here (a listing of another
prefix would be allowed by moto and refused by MinIO or AWS): its shape is checked in
tests/unit/test_minio_policy.py instead. MinIO's own evaluator is not run anywhere:
no MinIO server can be installed on these machines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from services.storage.policy import user_policy
from shared.netutil import free_port

BUCKET = "hpo-artifacts"
SETUP_ACTIONS = 3  # unauthenticated: the admin user, its policy, its key


@pytest.fixture
def iam_s3() -> Iterator[str]:
    """A private moto server that authorises every request after the first three."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import socket

    while True:
        assert process.poll() is None, "moto server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def client(service: str, url: str, key: str = "setup", secret: str = "setup") -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def user_with_policy(iam: Any, name: str, policy: dict[str, Any]) -> tuple[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def denied(call: Any, **kwargs: Any) -> bool:
    try:
        call(**kwargs)
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "AccessDenied"
    return False


def test_a_user_reads_their_own_prefix_and_nothing_else(iam_s3: str) -> None:
    admin_key = user_with_policy(
        client("iam", iam_s3),
        "admin",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        },
    )
    iam = client("iam", iam_s3, *admin_key)
    admin = client("s3", iam_s3, *admin_key)
    admin.create_bucket(Bucket=BUCKET)
    for key in ("alice/t1/t1.0.metrics.tgz", "bob/t2/t2.0.metrics.tgz", "alice2/t3/x.tgz"):
        admin.put_object(Bucket=BUCKET, Key=key, Body=b"data")
    alice = client("s3", iam_s3, *user_with_policy(iam, "alice", user_policy("alice", BUCKET)))

    own = alice.get_object(Bucket=BUCKET, Key="alice/t1/t1.0.metrics.tgz")
    assert own["Body"].read() == b"data"
    listed = alice.list_objects_v2(Bucket=BUCKET, Prefix="alice/")
    assert [o["Key"] for o in listed["Contents"]] == ["alice/t1/t1.0.metrics.tgz"]
    assert alice.get_bucket_location(Bucket=BUCKET) is not None

    assert denied(alice.get_object, Bucket=BUCKET, Key="bob/t2/t2.0.metrics.tgz")
    assert denied(alice.get_object, Bucket=BUCKET, Key="alice2/t3/x.tgz")  # not a prefix match
    assert denied(alice.put_object, Bucket=BUCKET, Key="alice/t1/new", Body=b"x")
    assert denied(alice.delete_object, Bucket=BUCKET, Key="alice/t1/t1.0.metrics.tgz")
    assert denied(alice.create_bucket, Bucket="another")
    assert denied(alice.get_object, Bucket="another-bucket", Key="alice/t1/t1.0.metrics.tgz")
