"""Where the client sends: `resolve_config` is pure, so each rule is one call with a dict env."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.errors import ConfigurationError
from headwater.sdk.config import DEFAULT_BASE_URL, DEFAULT_EVENT_KEY, resolve_config

A = "http://arg.test"
H = "http://headwater-env.test"
HE = "http://headwater-events.test"
I = "http://inngest-env.test"  # noqa: E741 - a URL constant, not a loop variable
IE = "http://inngest-events.test"
D = "http://inngest-dev.test"


def test_defaults_point_at_the_local_dev_server() -> None:
    config = resolve_config({})

    assert config.base_url == DEFAULT_BASE_URL == "http://127.0.0.1:8288"
    assert config.event_api_base_url == DEFAULT_BASE_URL
    assert config.event_key == DEFAULT_EVENT_KEY == "NO_EVENT_KEY_SET"
    assert config.dev is None
    assert config.event_url == "http://127.0.0.1:8288/e/NO_EVENT_KEY_SET"


@pytest.mark.parametrize(
    ("env", "base_url", "expected"),
    [
        ({"HEADWATER_BASE_URL": H, "INNGEST_BASE_URL": I, "INNGEST_DEV": D}, A, A),
        ({"HEADWATER_BASE_URL": H, "INNGEST_BASE_URL": I, "INNGEST_DEV": D}, None, H),
        ({"INNGEST_BASE_URL": I, "INNGEST_DEV": D}, None, I),
        ({"INNGEST_DEV": D}, None, D),
        ({"HEADWATER_BASE_URL": "", "INNGEST_BASE_URL": I}, None, I),  # empty counts as unset
    ],
)
def test_base_url_precedence(env: dict[str, str], base_url: str | None, expected: str) -> None:
    config = resolve_config(env, base_url=base_url)

    assert config.base_url == expected
    assert config.event_api_base_url == expected  # no event-specific setting: same server


@pytest.mark.parametrize(
    ("env", "kwargs", "expected"),
    [
        # explicit arguments beat the whole environment
        (
            {"HEADWATER_EVENT_API_BASE_URL": HE, "INNGEST_EVENT_API_BASE_URL": IE},
            {"event_api_base_url": "http://arg-events.test", "base_url": A},
            "http://arg-events.test",
        ),
        ({"HEADWATER_EVENT_API_BASE_URL": HE}, {"base_url": A}, A),
        # HEADWATER_* beats INNGEST_*, the specific variable before the general one
        ({"HEADWATER_EVENT_API_BASE_URL": HE, "HEADWATER_BASE_URL": H}, {}, HE),
        ({"HEADWATER_BASE_URL": H, "INNGEST_EVENT_API_BASE_URL": IE}, {}, H),
        ({"INNGEST_EVENT_API_BASE_URL": IE, "INNGEST_BASE_URL": I}, {}, IE),
        ({"INNGEST_BASE_URL": I, "INNGEST_DEV": D}, {}, I),
        ({"INNGEST_DEV": D}, {}, D),
    ],
)
def test_event_api_base_url_precedence(
    env: dict[str, str], kwargs: dict[str, str], expected: str
) -> None:
    assert resolve_config(env, **kwargs).event_api_base_url == expected


def test_the_event_api_can_live_apart_from_the_base_url() -> None:
    config = resolve_config({"HEADWATER_EVENT_API_BASE_URL": HE, "HEADWATER_BASE_URL": H})

    assert config.base_url == H
    assert config.event_api_base_url == HE


@pytest.mark.parametrize(
    ("env", "event_key", "expected"),
    [
        ({"HEADWATER_EVENT_KEY": "hw", "INNGEST_EVENT_KEY": "inn"}, "arg", "arg"),
        ({"HEADWATER_EVENT_KEY": "hw", "INNGEST_EVENT_KEY": "inn"}, None, "hw"),
        ({"INNGEST_EVENT_KEY": "inn"}, None, "inn"),
        ({"INNGEST_EVENT_KEY": "  "}, None, "NO_EVENT_KEY_SET"),
        ({}, "", "NO_EVENT_KEY_SET"),
    ],
)
def test_event_key_precedence(env: dict[str, str], event_key: str | None, expected: str) -> None:
    assert resolve_config(env, event_key=event_key).event_key == expected


@pytest.mark.parametrize(
    ("value", "dev", "base_url"),
    [
        ("1", True, DEFAULT_BASE_URL),
        ("true", True, DEFAULT_BASE_URL),
        ("TRUE", True, DEFAULT_BASE_URL),
        ("0", False, DEFAULT_BASE_URL),
        ("false", False, DEFAULT_BASE_URL),
        ("http://localhost:9999/", True, "http://localhost:9999"),
        ("maybe", None, DEFAULT_BASE_URL),  # ignored, as the Inngest SDKs ignore it
        ("", None, DEFAULT_BASE_URL),
    ],
)
def test_inngest_dev_is_a_boolean_or_a_url(value: str, dev: bool | None, base_url: str) -> None:
    config = resolve_config({"INNGEST_DEV": value})

    assert config.dev is dev
    assert config.base_url == base_url


@pytest.mark.parametrize(
    ("given", "event_url"),
    [
        ("http://host/prefix/", "http://host/prefix/e/KEY"),
        ("http://host/prefix", "http://host/prefix/e/KEY"),
        ("https://host:8443", "https://host:8443/e/KEY"),
        ("  HTTP://host/  ", "http://host/e/KEY"),
    ],
)
def test_a_path_prefix_is_kept_and_the_trailing_slash_dropped(given: str, event_url: str) -> None:
    assert resolve_config({}, base_url=given, event_key="KEY").event_url == event_url


def test_the_event_key_is_quoted_in_the_path() -> None:
    config = resolve_config({}, event_key="a/b c?")

    assert config.event_url == f"{DEFAULT_BASE_URL}/e/a%2Fb%20c%3F"


@pytest.mark.parametrize(
    ("env", "kwargs", "source"),
    [
        ({}, {"base_url": "ftp://host"}, "base_url"),
        ({}, {"base_url": "localhost:8288"}, "base_url"),
        ({}, {"event_api_base_url": "http://"}, "event_api_base_url"),
        ({"HEADWATER_BASE_URL": "http://host:99999"}, {}, "HEADWATER_BASE_URL"),
        ({"INNGEST_BASE_URL": "http://host/?x=1"}, {}, "INNGEST_BASE_URL"),
        ({"INNGEST_DEV": "htp://typo"}, {}, "INNGEST_DEV"),
    ],
)
def test_an_unusable_url_names_its_source(
    env: dict[str, str], kwargs: dict[str, str], source: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"^{source} "):
        resolve_config(env, **kwargs)


_URL_VARIABLES = [
    "HEADWATER_BASE_URL",
    "HEADWATER_EVENT_API_BASE_URL",
    "INNGEST_BASE_URL",
    "INNGEST_EVENT_API_BASE_URL",
    "INNGEST_DEV",
]


@given(
    env=st.dictionaries(
        st.sampled_from(_URL_VARIABLES),
        st.sampled_from([H, HE, I, IE, D, ""]),
    ),
    key_env=st.dictionaries(
        st.sampled_from(["HEADWATER_EVENT_KEY", "INNGEST_EVENT_KEY"]), st.sampled_from(["k", ""])
    ),
)
def test_explicit_arguments_always_win(env: dict[str, str], key_env: dict[str, str]) -> None:
    config = resolve_config({**env, **key_env}, base_url=A, event_key="arg-key")

    assert config.base_url == A
    assert config.event_api_base_url == A
    assert config.event_key == "arg-key"


@given(
    env=st.dictionaries(
        st.sampled_from(["INNGEST_BASE_URL", "INNGEST_EVENT_API_BASE_URL", "INNGEST_DEV"]),
        st.sampled_from([I, IE, D, "1", ""]),
    )
)
def test_headwater_variables_beat_every_inngest_variable(env: dict[str, str]) -> None:
    config = resolve_config({**env, "HEADWATER_BASE_URL": H, "HEADWATER_EVENT_KEY": "hw"})

    assert config.base_url == H
    assert config.event_api_base_url == H
    assert config.event_key == "hw"
