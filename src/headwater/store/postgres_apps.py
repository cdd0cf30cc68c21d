"""The app verbs of the PostgreSQL backend (apps synced over the Inngest protocol, PROTOCOL §3.2),
mixed into `PostgresStore` like the run and wait verbs. A sync is one explicit transaction: it
reads the stored checksum (locked) before it writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol, TypeVar

import orjson
from psycopg import AsyncConnection
from psycopg.abc import Params
from psycopg.rows import TupleRow

from headwater.store.apps import AppFunctionRecord, AppRecord

T = TypeVar("T")
_Connection = AsyncConnection[TupleRow]

_APP_COLUMNS: Final = "app_id, url, sdk, framework, checksum, created_at, synced_at"
_FUNCTION_COLUMNS: Final = "slug, app_id, config, synced_at, archived_at"


class _Plumbing(Protocol):
    async def _run(self, work: Callable[[_Connection], Awaitable[T]]) -> T: ...

    async def _fetch(self, sql: str, params: Params) -> list[tuple[Any, ...]]: ...


def _function_record(row: Sequence[Any]) -> AppFunctionRecord:
    # psycopg hands JSONB back decoded; the record keeps the JSON bytes, as SQLite's does.
    return AppFunctionRecord(
        row[0], row[1], orjson.dumps(row[2]), int(row[3]), None if row[4] is None else int(row[4])
    )


class PostgresAppVerbs:
    #: Several processes share one database: an app synced through one of them must reach the
    #: others' registries, which poll the apps' checksums now and then (engine/runtime.py).
    apps_shared_between_processes = True

    async def sync_app(
        self: _Plumbing, app: AppRecord, functions: Sequence[AppFunctionRecord]
    ) -> bool:
        async def sync(connection: _Connection) -> bool:
            async with connection.transaction():
                cursor = await connection.execute(
                    "SELECT checksum FROM apps WHERE app_id = %s FOR UPDATE", (app.app_id,)
                )
                row = await cursor.fetchone()
                if row is not None and row[0] == app.checksum:
                    await connection.execute(
                        "UPDATE apps SET synced_at = GREATEST(synced_at, %s) WHERE app_id = %s",
                        (app.synced_at, app.app_id),
                    )
                    return False
                await connection.execute(
                    f"INSERT INTO apps ({_APP_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s)"
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
                for function in functions:
                    await connection.execute(
                        f"INSERT INTO app_functions ({_FUNCTION_COLUMNS})"
                        " VALUES (%s,%s,%s::jsonb,%s,NULL)"
                        " ON CONFLICT (slug) DO UPDATE SET app_id = excluded.app_id,"
                        " config = excluded.config, synced_at = excluded.synced_at,"
                        " archived_at = NULL",
                        (
                            function.slug,
                            app.app_id,
                            function.config_json.decode(),
                            function.synced_at,
                        ),
                    )
                await connection.execute(
                    "UPDATE app_functions SET archived_at = %s WHERE app_id = %s"
                    " AND archived_at IS NULL AND NOT (slug = ANY(%s))",
                    (app.synced_at, app.app_id, [f.slug for f in functions]),
                )
                return True

        return await self._run(sync)

    async def list_apps(self: _Plumbing) -> list[AppRecord]:
        rows = await self._fetch(f"SELECT {_APP_COLUMNS} FROM apps ORDER BY app_id", ())
        return [AppRecord(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6])) for r in rows]

    async def app_functions(
        self: _Plumbing, app_id: str, *, include_archived: bool = False
    ) -> list[AppFunctionRecord]:
        archived = "" if include_archived else " AND archived_at IS NULL"
        rows = await self._fetch(
            f"SELECT {_FUNCTION_COLUMNS} FROM app_functions WHERE app_id = %s{archived}"
            " ORDER BY slug",
            (app_id,),
        )
        return [_function_record(row) for row in rows]
