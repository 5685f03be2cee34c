"""The api under generated input, over real HTTP: hypothesis over task submissions and
Hopaas asks, and schemathesis over the whole OpenAPI description. Every answer is a 2xx
or a 4xx (a 422 names the field); never a 5xx, and every documented response conforms
to its schema. Bounded example counts keep this to about a minute."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.integration.central import Central, central, file_artifacts
from tests.unit.test_input_properties import ARGUMENTS, JSONISH, KINDS, OPTIONS, SPACES

pytestmark = [
    pytest.mark.mongo,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    # The services under test run in this process's other threads, and the database
    # driver's monitors draw from the global `random` for their jitter: Hypothesis sees
    # that state move while it draws and takes it for a strategy using `random`.
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
]
"""Bounded by example counts, not by time: a loaded machine takes longer, never forever."""

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
async def system(mongo_db_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as c:
        yield c


def answered_well(reply: httpx.Response) -> None:
    assert reply.status_code < 500, reply.text[:1000]
    if reply.status_code == 422:
        detail = reply.json()["detail"]
        assert detail and all(isinstance(e["loc"], list) and e["loc"] for e in detail), detail


def fuzz_submissions(url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:

        @FUZZ
        @given(
            st.fixed_dictionaries({"evaluationExec": st.just("python train.py")}),
            st.fixed_dictionaries({}, optional=OPTIONS),
            SPACES,
            st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3),
        )
        def submit(
            base: dict[str, Any], config: dict[str, Any], space: object, files: dict[str, str]
        ) -> None:
            body = {"config": {**base, **config}, "searchSpace": space, "files": files}
            answered_well(http.post("/api/v1/tasks", content=json.dumps(body)))

        submit()


def fuzz_asks(url: str, token: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:

        @FUZZ
        @given(
            st.dictionaries(
                st.text(max_size=6),
                st.one_of(
                    st.builds(lambda k, a: f"optuna#{k}({','.join(a)})", KINDS, ARGUMENTS),
                    JSONISH,
                ),
                max_size=4,
            ),
            JSONISH,
        )
        def ask(properties: dict[str, Any], config: object) -> None:
            body = {**properties, "hopaas_config": config}
            reply = http.post(f"/api/ask/{token}", content=json.dumps(body))
            answered_well(reply)
            assert reply.status_code in (200, 400, 409, 422), reply.text[:500]

        ask()


async def test_submissions_never_get_a_5xx(system: Central) -> None:
    token = await system.token("fuzz", ["user"])
    await asyncio.to_thread(fuzz_submissions, system.api_url, token)


async def test_hopaas_asks_never_get_a_5xx(system: Central) -> None:
    from tests.integration.test_online import steering_serves

    await steering_serves(system)
    token = await system.token("fuzz", ["user"])
    await asyncio.to_thread(fuzz_asks, system.api_url, token)


SITE = "fuzz-site"


def check_operation(operation: Any, url: str, token: str, mode: GenerationMode) -> None:
    """A few generated calls of one operation; raises on the first failed check."""

    examples = 10 if mode is GenerationMode.POSITIVE else 5

    @settings(FUZZ, max_examples=examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        if "token" in (case.path_parameters or {}):
            case.path_parameters["token"] = token
        if "site" in (case.path_parameters or {}):
            case.path_parameters["site"] = SITE
        if operation.path.endswith("/leases") and isinstance(case.body, dict):
            case.body["wait_seconds"] = 0.2  # a long poll: 10 s by default
        response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"})
        case.validate_response(
            response,
            checks=[
                not_a_server_error,
                response_schema_conformance,
                content_type_conformance,
            ],
        )

    call()


def run_schemathesis(url: str, user: str, edge: str) -> list[str]:
    """Every operation of the OpenAPI description, a few examples each, called with a
    valid token (the user's, the site's for the edge protocol, in the path for Hopaas)."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        token = edge if operation.path.startswith("/edge/") else user
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                check_operation(operation, url, token, mode)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to send wrong
            except Exception as exc:  # collect, so that one run reports every operation
                failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:3000])
    return failures


async def test_schemathesis_over_the_openapi(system: Central) -> None:
    user = await system.token("fuzz", ["user"])
    edge = await system.token("ops", [f"edge:{SITE}"])
    failures = await asyncio.to_thread(run_schemathesis, system.api_url, user, edge)
    assert not failures, "\n\n".join(failures)
