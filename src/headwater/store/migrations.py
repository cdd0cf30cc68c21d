"""Numbered `.sql` migrations per dialect, shipped as package resources (`sql/<dialect>/NNNN_*.sql`)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from headwater.errors import MigrationError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    folder = resources.files("headwater.store").joinpath("sql", dialect)
    migrations: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        number, _, rest = entry.name.partition("_")
        if not number.isdigit():
            raise MigrationError(f"migration file {entry.name} must start with a number")
        migrations.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers for {dialect}: {versions}")
    return migrations
