"""The per-user MinIO policy as a document: what each statement allows, on what."""

from __future__ import annotations

import json

import pytest

from services.storage.policy import artifact_key, checkpoint_key, user_policy, user_policy_name


def statements(owner: str) -> dict[str, dict[str, object]]:
    policy = user_policy(owner, "hpo-artifacts")
    assert policy["Version"] == "2012-10-17"
    json.dumps(policy)  # what the admin API is sent
    return {s["Sid"]: s for s in policy["Statement"]}


def test_reads_only_the_owners_prefix() -> None:
    by_sid = statements("alice")
    assert set(by_sid) == {"FindTheBucket", "ListOwnPrefix", "ReadOwnObjects"}
    assert all(s["Effect"] == "Allow" for s in by_sid.values())  # nothing else is allowed
    assert by_sid["ReadOwnObjects"]["Action"] == ["s3:GetObject"]
    assert by_sid["ReadOwnObjects"]["Resource"] == ["arn:aws:s3:::hpo-artifacts/alice/*"]
    listing = by_sid["ListOwnPrefix"]
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == ["arn:aws:s3:::hpo-artifacts"]
    # the console lists "alice/" and below; never "" (every user's name) nor "alice2/"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["alice/", "alice/*"]}}
    actions = {a for s in by_sid.values() for a in s["Action"]}  # type: ignore[attr-defined]
    assert not any(a.startswith(("s3:Put", "s3:Delete")) for a in actions)
    assert user_policy_name("alice") == "hpo-user-alice"


def test_the_policy_covers_every_kind_of_artifact_key() -> None:
    prefix = "alice/"
    keys = [
        artifact_key("alice", "t1", "t1.main.0.a1", k, segment="s", point_index=0, segmented=True)
        for k in ("metrics", "meta", "log")
    ] + [checkpoint_key("alice", "t1", "t1.main.0.a1", 3)]
    assert all(key.startswith(prefix) for key in keys)


@pytest.mark.parametrize("owner", ["a*", "a?", "${aws:username}", "a/b", "", "-lead"])
def test_owners_that_would_be_wildcards_get_no_policy(owner: str) -> None:
    with pytest.raises(ValueError, match="cannot be named exactly"):
        user_policy(owner, "hpo-artifacts")
