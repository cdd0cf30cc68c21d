"""The app verbs of the SQLite backend (apps synced over the Inngest protocol, PROTOCOL §3.2),
mixed into `SQLiteStore` like the run and wait verbs; each write is one job of the group-commit
writer, so one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, TypeVar

from headwater.store.apps import AppFunctionRecord, AppRecord

T = TypeVar("T")

_APP_COLUMNS: Final = "app_id, url, sdk, framework, checksum, created_at, synced_at"
_FUNCTION_COLUMNS: Final = "slug, app_id, config, synced_at, archived_at"


class _Plumbing(Protocol):
    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T: ...


def _app_record(row: Sequence[Any]) -> AppRecord:
    return AppRecord(*row)


def _function_record(row: Sequence[Any]) -> AppFunctionRecord:
    return AppFunctionRecord(row[0], row[1], str(row[2]).encode(), row[3], row[4])


class SQLiteAppVerbs:
    #: One process owns a SQLite file: the engine that syncs an app is the one that runs it, so
    #: there is no need to poll the store for apps synced elsewhere.
    apps_shared_between_processes = False

    async def sync_app(
        self: _Plumbing, app: AppRecord, functions: Sequence[AppFunctionRecord]
    ) -> bool:
        def sync(connection: sqlite3.Connection) -> bool:
            row = connection.execute(
                "SELECT checksum FROM apps WHERE app_id = ?", (app.app_id,)
            ).fetchone()
            if row is not None and row[0] == app.checksum:
                connection.execute(
                    "UPDATE apps SET synced_at = MAX(synced_at, ?) WHERE app_id = ?",
                    (app.synced_at, app.app_id),
                )
                return False
            connection.execute(
                f"INSERT INTO apps ({_APP_COLUMNS}) VALUES (?,?,?,?,?,?,?)"
                " ON CONFLICT (app_id) DO UPDATE SET url = excluded.url, sdk = excluded.sdk,"
                " framework = excluded.framework, checksum = excluded.checksum,"
                " synced_at = excluded.synced_at",
                (
                    app.app_id,
                    app.url,
                    app.sdk,
                    app.framework,
                    app.checksum,
                    app.created_at,
                    app.synced_at,
                ),
            )
            connection.executemany(
                f"INSERT INTO app_functions ({_FUNCTION_COLUMNS}) VALUES (?,?,?,?,NULL)"
                " ON CONFLICT (slug) DO UPDATE SET app_id = excluded.app_id,"
                " config = excluded.config, synced_at = excluded.synced_at, archived_at = NULL",
                [(f.slug, app.app_id, f.config_json.decode(), f.synced_at) for f in functions],
            )
            slugs = [f.slug for f in functions]
            marks = ",".join("?" * len(slugs))
            connection.execute(
                "UPDATE app_functions SET archived_at = ?"
                f" WHERE app_id = ? AND archived_at IS NULL AND slug NOT IN ({marks})",
                (app.synced_at, app.app_id, *slugs),
            )
            return True

        return await self._write(sync)

    async def list_apps(self: _Plumbing) -> list[AppRecord]:
        def select(connection: sqlite3.Connection) -> list[AppRecord]:
            rows = connection.execute(f"SELECT {_APP_COLUMNS} FROM apps ORDER BY app_id")
            return [_app_record(row) for row in rows]

        return await self._read(select)

    async def app_functions(
        self: _Plumbing, app_id: str, *, include_archived: bool = False
    ) -> list[AppFunctionRecord]:
        archived = "" if include_archived else " AND archived_at IS NULL"

        def select(connection: sqlite3.Connection) -> list[AppFunctionRecord]:
            rows = connection.execute(
                f"SELECT {_FUNCTION_COLUMNS} FROM app_functions WHERE app_id = ?{archived}"
                " ORDER BY slug",
                (app_id,),
            )
            return [_function_record(row) for row in rows]

        return await self._read(select)
