"""The SigV4 signatures of the ``s3://`` store's presigned URLs, checked independently.

No S3 server installable here verifies presigned signatures: moto's server accepts any
(its ``INITIAL_NO_AUTH_ACTION_COUNT`` authentication reads only the ``Authorization``
header, never the query string), s3rver skips SigV4 entirely, and Ceph's radosgw needs
a whole Ceph cluster. So the URLs that minio signs for the store are verified here the
way S3 does it, by recomputing the signature from the URL's parts and the credentials,
with botocore's SigV4 query signer, an implementation independent of minio's. The
verifier is first shown to reproduce AWS's published example.

Proven: the store's PUT and GET URLs carry the signature S3 computes for exactly that
method, host, bucket, key, date, expiry, region and access key; changing any of them
(or using another secret) gives another signature, which S3 refuses. Not proven: that a
real server accepts them (clock skew, its own path normalisation), and the body of a
presigned PUT is *not* signed (``UNSIGNED-PAYLOAD``), so integrity rests on the storage
service re-reading size and sha256 after the upload, which its own tests cover.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from shared.artifacts.s3 import S3ArtifactStore

ACCESS, SECRET = "hpo-storage", "s3cr3t/with+odd=chars"
STORE_URL = f"s3://{ACCESS}:s3cr3t%2Fwith%2Bodd%3Dchars@minio.internal:9000/artifacts?secure=false"


def canonical(method: str, url: str, secret: str, body: bytes = b"") -> tuple[str, str, str]:
    """(signature in the URL, signature S3 computes, canonical request) for ``url``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    fields = dict(query)
    access, _date, region, service, _end = fields["X-Amz-Credential"].split("/")
    rest = [(k, v) for k, v in query if k != "X-Amz-Signature"]
    unsigned = urlunsplit(parts._replace(query=urlencode(rest)))
    request = AWSRequest(method=method, url=unsigned, headers={"host": parts.netloc}, data=body)
    request.context["timestamp"] = fields["X-Amz-Date"]
    auth = S3SigV4QueryAuth(
        Credentials(access, secret), service, region, expires=int(fields["X-Amz-Expires"])
    )
    request_text = auth.canonical_request(request)
    computed = auth.signature(auth.string_to_sign(request, request_text), request)
    return fields["X-Amz-Signature"], computed, request_text


def valid(method: str, url: str, secret: str = SECRET) -> bool:
    given, computed, _ = canonical(method, url, secret)
    return given == computed


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = [(k, changes.get(k, v)) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_the_verifier_reproduces_awss_published_example() -> None:
    # The presigned GET of "Authenticating Requests: Using Query Parameters (AWS
    # Signature Version 4)" in the Amazon S3 API reference.
    url = (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    assert valid("GET", url, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert not valid("GET", url, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEz")


@pytest.fixture
def store() -> S3ArtifactStore:
    return S3ArtifactStore.from_url(STORE_URL)


KEYS = [
    "alice/task_1/main.task_1.3.metrics.tgz",
    "alice/task_1/checkpoints/task_1.main.3.a1.2.tar.gz",
    "bob/task_2/seg-A+1.task_2.0.metrics.tgz",
]


@pytest.mark.parametrize("key", KEYS)
def test_presigned_put_and_get_carry_the_signature_s3_computes(
    store: S3ArtifactStore, key: str
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    put = store.presign_put(key, timedelta(minutes=30))
    get = store.presign_get(key, timedelta(days=7))
    after = datetime.now(UTC)
    assert valid("PUT", put) and valid("GET", get)
    for url, seconds in ((put, 1800), (get, 7 * 86400)):
        fields = dict(parse_qsl(urlsplit(url).query))
        assert fields["X-Amz-Expires"] == str(seconds)
        signed_at = datetime.strptime(fields["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert before <= signed_at <= after
        assert fields["X-Amz-Credential"].startswith(f"{ACCESS}/")
        assert fields["X-Amz-Credential"].split("/")[2:] == ["us-east-1", "s3", "aws4_request"]
        assert urlsplit(url).netloc == "minio.internal:9000"


def test_tampering_with_any_signed_part_breaks_the_signature(store: S3ArtifactStore) -> None:
    key = KEYS[0]
    url = store.presign_put(key, timedelta(minutes=30))
    parts = urlsplit(url)
    fields = dict(parse_qsl(parts.query))
    other_day = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 86400))
    tampered = {
        "method GET": ("GET", url),
        "method DELETE": ("DELETE", url),
        "another key": ("PUT", url.replace("/main.task_1.3.", "/main.task_1.4.")),
        "another owner": ("PUT", url.replace("/alice/", "/mallory/")),
        "another bucket": ("PUT", url.replace("/artifacts/", "/backups/")),
        "another host": ("PUT", url.replace("minio.internal:9000", "minio.other:9000")),
        "a longer expiry": ("PUT", with_query(url, **{"X-Amz-Expires": "604800"})),
        "another date": ("PUT", with_query(url, **{"X-Amz-Date": other_day})),
        "another region": (
            "PUT",
            with_query(
                url,
                **{
                    "X-Amz-Credential": fields["X-Amz-Credential"].replace("us-east-1", "eu-west-1")
                },
            ),
        ),
    }
    assert valid("PUT", url)
    broken = {name for name, (method, changed) in tampered.items() if not valid(method, changed)}
    assert broken == set(tampered)
    assert not valid("PUT", url, secret=SECRET + "x")


def test_a_public_endpoint_signs_for_the_public_host_only() -> None:
    store = S3ArtifactStore.from_url(f"{STORE_URL}&public_endpoint=https://s3.example.org")
    url = store.presign_get(KEYS[0], timedelta(hours=1))
    assert urlsplit(url).scheme == "https" and urlsplit(url).netloc == "s3.example.org"
    assert valid("GET", url)
    internal = url.replace("https://s3.example.org", "http://minio.internal:9000")
    assert not valid("GET", internal)


def test_the_body_of_a_presigned_put_is_not_signed(store: S3ArtifactStore) -> None:
    url = store.presign_put(KEYS[0], timedelta(minutes=30))
    given, one, request_text = canonical("PUT", url, SECRET, body=b"the metrics")
    _, other, _ = canonical("PUT", url, SECRET, body=b"something else entirely")
    assert request_text.endswith("\nUNSIGNED-PAYLOAD")
    assert given == one == other
