"""The SQL every table of leased background jobs shares (replay_jobs, cancellation_jobs), written
once for both dialects: the tables differ in their own columns and progress, not in how a job is
stored, listed, leased or ended."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class JobTableSql:
    #: Parameters: the row's columns, in order.
    insert: str
    #: Parameters: job_id.
    get: str
    #: Newest first. Parameters: limit.
    page: str
    #: Newest first, before a job id (the previous page's last). Parameters: before_id, limit.
    page_before: str
    #: Oldest first. Parameters: the Running state, limit.
    running: str
    #: Take (or renew) the lease of a running job: one row changes if it is Running and unheld,
    #: already `owner`'s, or held by an expired lease. Parameters: owner, lease_until, job_id, the
    #: Running state, owner, now.
    claim: str
    #: Give a running job its final state. Parameters: state, error, now, now, job_id, the
    #: Running state.
    end: str


def job_table_sql(table: str, columns: str, mark: str) -> JobTableSql:
    """The statements of `table` (whose columns are `columns`) in a dialect (`mark`: `?` or `%s`)."""
    select = f"SELECT {columns} FROM {table}"
    return JobTableSql(
        insert=f"INSERT INTO {table} ({columns})"
        f" VALUES ({', '.join([mark] * len(columns.split(',')))})",
        get=f"{select} WHERE job_id = {mark}",
        page=f"{select} ORDER BY job_id DESC LIMIT {mark}",
        page_before=f"{select} WHERE job_id < {mark} ORDER BY job_id DESC LIMIT {mark}",
        running=f"{select} WHERE state = {mark} ORDER BY job_id LIMIT {mark}",
        claim=f"UPDATE {table} SET lease_owner = {mark}, lease_until = {mark}"
        f" WHERE job_id = {mark} AND state = {mark}"
        f" AND (lease_owner IS NULL OR lease_owner = {mark} OR lease_until <= {mark})",
        end=f"UPDATE {table} SET state = {mark}, error = {mark}, updated_at = {mark},"
        f" ended_at = {mark} WHERE job_id = {mark} AND state = {mark}",
    )


def page_params(limit: int, before_id: str | None) -> tuple[object, ...]:
    """The parameters of `page` (no `before_id`) or `page_before`."""
    return (limit,) if before_id is None else (before_id, limit)
