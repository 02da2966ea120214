"""Whether ToteSys still has the tables, columns and types the extract reads."""

from __future__ import annotations

import re

from psycopg2.extensions import connection as Connection

from totes.schema.source import SOURCE_TABLES, catalog_type


class SchemaDriftError(Exception):
    """ToteSys no longer has the tables, columns or types we extract."""


def _compatible_retype(declared: str, found: str, *, key: bool = False) -> bool:
    """A type change every value we expect still fits in (values that do not are set aside
    row by row by the transform, which checks each value against the declared type). A
    key only to bigint: its buckets and id ranges are integer arithmetic."""
    if key:
        return declared == "integer" and found == "bigint"
    if declared == "integer":
        # numeric with a scale writes every integer as '5.00', which is no integer: every row
        # would be set aside, so that is an incompatible change, which stops the extract.
        return found in ("bigint", "numeric") or bool(re.fullmatch(r"numeric\(\d+,0\)", found))
    if declared.startswith("character varying") and found.startswith(("character varying", "text")):
        return True
    if declared == "text" and found.startswith("character varying"):
        return True
    return declared.startswith("numeric") and found.startswith("numeric")


def check_source_schema(conn: Connection) -> list[str]:
    """Raise on missing or incompatibly retyped columns; return warnings for new columns and
    for compatible retypes (e.g. integer -> bigint)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
                 FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relname = ANY(%s)
                  AND a.attnum > 0 AND NOT a.attisdropped""",
            ([t.name for t in SOURCE_TABLES],),
        )
        found: dict[str, dict[str, str]] = {}
        for table, column, data_type in cur.fetchall():
            found.setdefault(table, {})[column] = data_type
    problems, warnings = [], []
    for table in SOURCE_TABLES:
        columns = found.get(table.name)
        if columns is None:
            problems.append(f"table {table.name!r} is missing")
            continue
        for col in table.columns:
            declared = catalog_type(col)
            actual = columns.get(col.name)
            if actual is None:
                problems.append(f"table {table.name!r} lost column {col.name!r}")
            elif actual != declared:
                change = f"table {table.name!r} column {col.name!r} is {actual}, not {declared}"
                if _compatible_retype(declared, actual, key=col.name == table.primary_key):
                    warnings.append(f"{change}; values that do not fit {declared} are set aside")
                else:
                    problems.append(change)
        for name, data_type in columns.items():
            if name not in table.column_names:
                warnings.append(
                    f"table {table.name!r} gained column {name!r} ({data_type}); not extracted"
                )
    if problems:
        raise SchemaDriftError("; ".join(problems))
    return warnings
