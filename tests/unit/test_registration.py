"""Parsing the register bodies of both official SDKs (PROTOCOL §3.2), from the recorded fixtures
(tests/fixtures/inngest-sdk/register_{py,ts}.json) and from variants of their quirks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from headwater.engine.apps import RegistrationError, checksum_of, parse_registration
from headwater.sdk.functions import CronTrigger, EventTrigger

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inngest-sdk"
FUNCTIONS = ["child", "account-created", "fails", "nonretriable", "parallel"]


def recorded(sdk: str) -> dict[str, Any]:
    path = FIXTURES / f"register_{sdk}.json"
    if not path.exists():
        pytest.skip(f"fixture {path} not present")
    body: dict[str, Any] = json.loads(path.read_text())["body"]
    return body


@pytest.mark.parametrize("sdk", ["py", "ts"])
def test_both_sdks_bodies_parse(sdk: str) -> None:
    body = recorded(sdk)
    sync = parse_registration(body)
    app_id = f"acceptance-{sdk}-app"
    assert sync.app_id == app_id
    assert sync.url == body["url"]
    assert sync.sdk == body["sdk"]
    assert [f.id for f in sync.functions] == FUNCTIONS
    assert [f.slug for f in sync.functions] == [f"{app_id}-{name}" for name in FUNCTIONS]
    by_id = {f.id: f for f in sync.functions}
    # `retries.attempts` is a retry count; absent means Inngest's default of 4.
    assert by_id["account-created"].retries == 2
    assert by_id["account-created"].max_attempts == 3
    assert by_id["fails"].retries == 1
    assert by_id["child"].retries == 4
    assert by_id["child"].triggers == (EventTrigger("app/child"),)
    for function in sync.functions:
        assert function.url is not None and f"fnId={function.slug}" in function.url
        assert function.is_async
    assert [slug for slug, _ in sync.configs] == [f.slug for f in sync.functions]


def test_spellings_and_empty_optional_fields_are_accepted() -> None:
    body = copy.deepcopy(recorded("py"))
    function = body["functions"][0]
    function.update(
        cancel=[],
        concurrency=[],
        throttle=None,
        rateLimit=None,
        debounce=None,
        batchEvents=None,
        priority=None,
        timeouts=None,
        name=None,
    )
    body["functions"][1]["concurrency"] = 5
    body["functions"][2]["concurrency"] = {"fn": [{"limit": 1}], "step": []}
    body["functions"][3]["concurrency"] = [{"limit": 2, "key": "event.data.id", "scope": "fn"}]
    sync = parse_registration(body)
    assert len(sync.functions) == 5
    assert sync.functions[0].name == "child"  # no name: the function id


def test_app_name_in_either_spelling_is_required() -> None:
    body = recorded("ts")
    assert parse_registration({**body}).app_id == "acceptance-ts-app"
    without = {k: v for k, v in body.items() if k != "appName"}
    with pytest.raises(RegistrationError) as raised:
        parse_registration(without)
    assert raised.value.message == "App ID required"
    assert parse_registration({**without, "appname": "acceptance-ts-app"}).functions


def test_cron_cancel_and_timeouts_are_read() -> None:
    body = copy.deepcopy(recorded("ts"))
    function = body["functions"][0]
    function["triggers"] = [{"cron": "TZ=Europe/Paris 0 9 * * 1"}, {"event": "app/*"}]
    function["cancel"] = [{"event": "app/stop", "if": "async.data.id == event.data.id"}]
    function["cancel"].append({"event": "app/halt", "timeout": "1h"})
    function["timeouts"] = {"start": "10s", "finish": "2m"}
    definition = parse_registration(body).functions[0]
    assert definition.triggers == (CronTrigger("TZ=Europe/Paris 0 9 * * 1"), EventTrigger("app/*"))
    assert [rule.event for rule in definition.cancel_on] == ["app/stop", "app/halt"]
    assert definition.cancel_on[1].timeout_ms == 3_600_000
    assert definition.timeouts is not None
    assert (definition.timeouts.start_ms, definition.timeouts.finish_ms) == (10_000, 120_000)


def test_retries_are_capped_at_twenty() -> None:
    body = copy.deepcopy(recorded("py"))
    body["functions"][0]["steps"]["step"]["retries"] = {"attempts": 50}
    assert parse_registration(body).functions[0].retries == 20


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"triggers": [{"event": "app/a*b"}]}, "trigger event"),
        ({"triggers": [{"event": "app/a", "expression": "event.data.x =="}]}, "expression"),
        ({"triggers": [{"nothing": 1}]}, "neither"),
        ({"steps": {}}, "steps"),
        ({"id": "another-app-fn"}, "the id must look like"),
        ({"concurrency": "five"}, "concurrency"),
        ({"cancel": [{"event": "app/x", "timeout": "soon"}]}, "cancel timeout"),
    ],
)
def test_an_invalid_function_is_reported_with_its_problem(
    change: dict[str, Any], message: str
) -> None:
    body = copy.deepcopy(recorded("ts"))
    body["functions"][1].update(change)
    with pytest.raises(RegistrationError) as raised:
        parse_registration(body)
    assert raised.value.message.startswith("At least one function is invalid: ")
    assert message in raised.value.message
    assert raised.value.status == 400


def test_the_checksum_ignores_key_order_and_deploy_ids() -> None:
    body = recorded("py")
    reordered = dict(reversed(list(body.items())))
    assert checksum_of(body) == checksum_of(reordered)
    assert checksum_of(body) == checksum_of({**body, "deployId": "d-1"})
    assert checksum_of(body) != checksum_of({**body, "url": "http://elsewhere/api/inngest"})
