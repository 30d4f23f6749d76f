"""The job row statements that run on every call, as hand-written SQL.

A call reads its job, is admitted to it, and locks it to be recorded.
As querysets, each of these took 0.4 to 0.5 ms more of the gateway's CPU
than as SQL, so they are written here once from the model's metadata (see
``saasllm.rows``). They read and change the same rows as the querysets did.
"""

import functools
import uuid

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.transaction import TransactionManagementError

from jobs.models import Job
from saasllm.rows import ModelColumns

JOB_COLUMNS = ModelColumns(Job, "j")


def read_job(job_id: uuid.UUID, *, team_id: str | None = None, lock: bool = False):
    """Return the job with ``job_id``, of ``team_id`` when given, or None.

    With ``lock`` the row stays locked until the caller's transaction ends,
    as ``select_for_update()`` does, where the database supports it, and as
    there, a lock outside a transaction raises TransactionManagementError.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    locks = lock and connection.features.has_select_for_update
    if locks and connection.get_autocommit():
        raise TransactionManagementError(
            "select_for_update cannot be used outside of a transaction."
        )
    params = [Job._meta.pk.get_db_prep_value(job_id, connection)]
    if team_id is not None:
        params.append(team_id)
    with connection.cursor() as cursor:
        cursor.execute(job_sql(connection.vendor, team_id is not None, locks), params)
        row = cursor.fetchone()
    return None if row is None else JOB_COLUMNS.instance(connection, row)


def lock_job(job_id: uuid.UUID) -> Job:
    """Return the job locked until the caller's transaction ends; it must exist."""
    job = read_job(job_id, lock=True)
    if job is None:
        raise Job.DoesNotExist(f"Job {job_id} does not exist.")
    return job


def admit_open_job_call(job_id: uuid.UUID, *, max_calls: int) -> bool:
    """Count one more call in flight on an open job below ``max_calls`` calls.

    One conditional UPDATE. Returns False when it matched no row.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    params = [
        *Job.OPEN_STATUSES,
        Job._meta.pk.get_db_prep_value(job_id, connection),
        max_calls,
    ]
    with connection.cursor() as cursor:
        cursor.execute(admit_sql(connection.vendor), params)
        return cursor.rowcount > 0


@functools.cache
def job_sql(vendor: str, by_team: bool, lock: bool) -> str:
    connection = connections[DEFAULT_DB_ALIAS]
    job = JOB_COLUMNS
    sql = (
        f"SELECT {job.select_list(connection)} FROM {job.table(connection)} "
        f"WHERE {job.column(connection, 'id')} = %s"
    )
    if by_team:
        sql += f" AND {job.column(connection, 'team')} = %s"
    if lock:
        sql += " FOR UPDATE"
    return sql


@functools.cache
def admit_sql(vendor: str) -> str:
    connection = connections[DEFAULT_DB_ALIAS]
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        return quote(Job._meta.get_field(name).column)

    count, in_flight = column("call_count"), column("calls_in_flight")
    statuses = ", ".join(["%s"] * len(Job.OPEN_STATUSES))
    return (
        f"UPDATE {quote(Job._meta.db_table)} "
        f"SET {count} = {count} + 1, {in_flight} = {in_flight} + 1 "
        f"WHERE {column('status')} IN ({statuses}) AND {column('id')} = %s "
        f"AND {count} < %s"
    )
