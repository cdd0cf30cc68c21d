"""The example app loads and defines what the README says."""

from __future__ import annotations

from examples.shop import hw


def test_example_app_defines_its_functions() -> None:
    assert [f.slug for f in hw.functions] == [
        "shop-score-account",
        "shop-welcome",
        "shop-daily-report",
    ]
    welcome = hw.functions[1]
    assert welcome.cancel_on[0].expression == "event.data.accountId == async.data.accountId"
