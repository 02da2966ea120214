"""The audit's SQL: one relation per side with the same typed columns, and the queries over it.

Each side's relation has columns ``c0 .. cN`` (every one cast to its warehouse type) and
``changed_at`` (ToteSys: the row's last_updated; warehouse: NULL). Hashes, bucket checksums
and value renderings are then built by the same code for both sides, so a row renders to
the same text in both databases, whatever their settings (the session also pins DateStyle).

Identifiers come from the audit model's allow-list (``totes.pipeline.audit_model``) through
``psycopg2.sql``; values (ids, ranges, the bucket width, currency names) are parameters.
"""

from __future__ import annotations

from typing import Literal

from psycopg2 import sql

from totes.pipeline.audit_model import AuditTable
from totes.pipeline.registers import BATCH_TABLE, DELETION_TABLE

Filter = Literal["all", "range", "ids"]


def _key_filter(key: sql.Composable, kind: Filter) -> sql.Composable:
    """A condition on the natural id: every row, ``lo <= id < hi``, or ``id = ANY(ids)``."""
    if kind == "range":
        return sql.SQL("{0} >= %(lo)s AND {0} < %(hi)s").format(key)
    if kind == "ids":
        return sql.SQL("{} = ANY(%(ids)s)").format(key)
    return sql.SQL("TRUE")


def _typed(expression: sql.Composable, pg_type: str, position: int) -> sql.Composable:
    return sql.SQL("({})::{} AS {}").format(
        expression, sql.SQL(pg_type), sql.Identifier(f"c{position}")
    )


def source_relation(table: AuditTable, kind: Filter) -> sql.Composable:
    """The rows ToteSys says ``table`` should hold (current source rows), typed as the
    warehouse's, with the time the row (or a row it is joined to) last changed."""
    columns = [_typed(sql.SQL(c.source), c.pg_type, i) for i, c in enumerate(table.columns)]
    changed = sql.SQL(", ").join(
        sql.SQL("{}.last_updated").format(sql.Identifier(alias)) for alias in table.changed_by
    )
    return sql.SQL("SELECT {columns}, greatest({changed}) AS changed_at FROM {source}"
                   " WHERE {where}").format(
        columns=sql.SQL(", ").join(columns),
        changed=changed,
        source=sql.SQL(table.source_from),
        where=_key_filter(sql.SQL(table.source_key), kind),
    )  # fmt: skip


def warehouse_relation(table: AuditTable, kind: Filter, *, register: bool) -> sql.Composable:
    """What the warehouse holds for ``table``: a dimension's rows; a fact's CURRENT version
    of each id, the greatest (batch, last_updated, record id), as the warehouse's
    ``<fact>_current`` views have it (see warehouse_views). Ids in the deletion
    register are left out: they are accounted for by the register."""
    key = sql.SQL("t.{}").format(sql.Identifier(table.key))
    conditions = [_key_filter(key, kind)]
    if register:
        conditions.append(
            sql.SQL(
                "NOT EXISTS (SELECT 1 FROM {} d WHERE d.table_name = %(table)s AND d.id = {})"
            ).format(sql.Identifier(DELETION_TABLE), key)
        )
    where = sql.SQL(" AND ").join(conditions)
    names = [sql.Identifier(c) for c in table.column_names]
    if table.kind == "fact":
        rows = sql.SQL(
            "(SELECT DISTINCT ON ({key}) {cols} FROM {table} t WHERE {where}"
            " ORDER BY {key}, t.batch_id DESC, t.last_updated_date DESC,"
            " t.last_updated_time DESC, t.{record_id} DESC) t"
        ).format(
            key=key,
            cols=sql.SQL(", ").join(sql.SQL("t.{}").format(n) for n in names),
            table=sql.Identifier(table.name),
            where=where,
            record_id=sql.Identifier(table.record_id),
        )
        where = sql.SQL("TRUE")
    else:
        rows = sql.SQL("{} t").format(sql.Identifier(table.name))
    columns = [
        _typed(sql.SQL("t.{}").format(n), c.pg_type, i)
        for i, (n, c) in enumerate(zip(names, table.columns, strict=True))
    ]
    return sql.SQL(
        "SELECT {columns}, NULL::timestamp AS changed_at FROM {rows} WHERE {where}"
    ).format(columns=sql.SQL(", ").join(columns), rows=rows, where=where)


def canonical_md5(expressions: list[sql.Composable]) -> sql.Composable:
    """md5 of a row's canonical text: each value quoted (NULL stays apart from '')."""
    return sql.SQL("md5(concat_ws('|', {}))").format(
        sql.SQL(", ").join(sql.SQL("quote_nullable({})").format(e) for e in expressions)
    )


def _positions(table: AuditTable) -> list[sql.Composable]:
    return [sql.Identifier(f"c{i}") for i in range(len(table.columns))]


def hashes(table: AuditTable, relation: sql.Composable) -> sql.Composable:
    """(id, row md5, changed_at) of each row of ``relation``."""
    return sql.SQL("SELECT {key} AS k, {md5} AS h, changed_at FROM ({relation}) r").format(
        key=sql.Identifier(f"c{table.key_index}"),
        md5=canonical_md5(_positions(table)),
        relation=relation,
    )


def bucket_checksums(table: AuditTable, relation: sql.Composable) -> sql.Composable:
    """Per id bucket (``id >> bits``): the row count and an order-independent checksum, the
    sum of 60 bits of each row's md5 (data-diff's): equal buckets hold equal rows."""
    return sql.SQL(
        "SELECT k >> %(bits)s AS bucket, count(*),"
        " sum(('x' || substr(h, 18))::bit(60)::bigint) FROM ({}) x GROUP BY 1"
    ).format(hashes(table, relation))


def values(table: AuditTable, relation: sql.Composable) -> sql.Composable:
    """The id and every column's text (NULL as None) of each row of ``relation``."""
    return sql.SQL("SELECT {key}, {columns} FROM ({relation}) r").format(
        key=sql.Identifier(f"c{table.key_index}"),
        columns=sql.SQL(", ").join(sql.SQL("{}::text").format(p) for p in _positions(table)),
        relation=relation,
    )


def duplicate_versions(table: AuditTable) -> sql.Composable:
    """Fact ids with a version that repeats the one before it (in the current views' order):
    (id, versions involved, their record ids). Content may come back after a change
    (A -> B -> A); a version that changes nothing is a duplicate."""
    typed = [
        sql.SQL("(t.{})::{}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
        for c in table.columns
    ]
    return sql.SQL(
        "SELECT k, count(*) + 1,"
        " (SELECT array_agg(DISTINCT r ORDER BY r)"
        " FROM unnest(array_agg(rid) || array_agg(prev)) r)"
        " FROM (SELECT k, rid, h, lag(h) OVER w AS prev_h, lag(rid) OVER w AS prev FROM"
        " (SELECT t.{key} AS k, t.{record_id} AS rid, {md5} AS h, t.batch_id,"
        " t.last_updated_date, t.last_updated_time FROM {table} t) v"
        " WINDOW w AS (PARTITION BY k"
        " ORDER BY batch_id, last_updated_date, last_updated_time, rid)) ordered"
        " WHERE h = prev_h GROUP BY k ORDER BY k"
    ).format(
        key=sql.Identifier(table.key),
        record_id=sql.Identifier(table.record_id),
        md5=canonical_md5(typed),
        table=sql.Identifier(table.name),
    )


def newest_fact_change(table: AuditTable) -> sql.Composable:
    """The newest last_updated among the fact's versions: how far the warehouse has got."""
    return sql.SQL("SELECT max(last_updated_date + last_updated_time) FROM {}").format(
        sql.Identifier(table.name)
    )


def newest_batch() -> sql.Composable:
    """The newest batch the load has taken (loaded or skipped): when its extract ran."""
    return sql.SQL("SELECT max(batch_id) FROM {}").format(sql.Identifier(BATCH_TABLE))


def registered_ids() -> sql.Composable:
    """(id, batch) of the register's entries for one table within ``lo <= id < hi``."""
    return sql.SQL(
        "SELECT id, batch_id FROM {} WHERE table_name = %(table)s AND id >= %(lo)s AND id < %(hi)s"
    ).format(sql.Identifier(DELETION_TABLE))
