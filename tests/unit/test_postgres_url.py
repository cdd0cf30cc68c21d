"""The PostgreSQL URL: pool options are taken out, everything else reaches libpq untouched."""

from __future__ import annotations

import pytest

from headwater.errors import ConfigurationError
from headwater.store.postgres import PostgresStore, parse_postgres_url, redact_url


def test_pool_options_are_removed_and_other_parameters_kept_verbatim() -> None:
    conninfo, pool = parse_postgres_url(
        "postgresql://u@db:5432/app?pool_max=4&options=-csearch_path%3Dhw%20x&pool_min=2&sslmode=require"
    )
    assert conninfo == "postgresql://u@db:5432/app?options=-csearch_path%3Dhw%20x&sslmode=require"
    assert pool == {"pool_max": "4", "pool_min": "2"}


def test_a_url_without_parameters_is_unchanged() -> None:
    assert parse_postgres_url("postgres://db/app") == ("postgres://db/app", {})
    assert parse_postgres_url("postgresql://db/app?pool_max=3") == (
        "postgresql://db/app",
        {"pool_max": "3"},
    )


@pytest.mark.parametrize(
    "query",
    ["pool_max=0", "pool_max=ten", "pool_min=5&pool_max=2", "pool_min=-1", "pool_timeout=0"],
)
def test_bad_pool_options_are_configuration_errors(query: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresStore(f"postgresql://db/app?{query}")


def test_not_a_postgres_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        parse_postgres_url("mysql://db/app")


def test_passwords_are_redacted_for_display() -> None:
    assert redact_url("postgresql://u:s3cret@db:5432/app?pool_max=2") == (
        "postgresql://u:***@db:5432/app?pool_max=2"
    )
    assert redact_url("postgresql://u@db/app?password=s3cret&sslmode=require") == (
        "postgresql://u@db/app?password=***&sslmode=require"
    )
    store = PostgresStore("postgresql://u:s3cret@db/app")
    assert "s3cret" not in store.url_for_display
