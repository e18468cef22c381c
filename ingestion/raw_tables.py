"""The raw tables staging reads, created empty when a load had nothing for them yet.

dlt creates a table only when a resource yields rows: an account without coupons, a run without
finance files or product events would leave staging without its source. Each source declares its
tables once (`RawTables`: the dlt column hints its resources use) and `ensure_tables` creates the
missing ones in the shape dlt gives them, with the indexes the source asks for.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

# dlt's own columns, last in every table it creates
DLT_COLUMNS: dict[str, dict[str, Any]] = {
    "_dlt_load_id": {"data_type": "text", "nullable": False},
    "_dlt_id": {"data_type": "text", "nullable": False},
}
# the PostgreSQL type dlt's postgres destination gives each dlt data type these sources use
POSTGRES_TYPES = {
    "text": "varchar",
    "timestamp": "timestamptz",
    "json": "jsonb",
    "decimal": "numeric(38, 9)",
    "date": "date",
    "bigint": "bigint",
}


class Index(NamedTuple):
    """An index on one column of a raw table; the name defaults to `<table>_<column>`."""

    table: str
    column: str
    using: str = "btree"
    name: str | None = None


@dataclass(frozen=True)
class RawTables:
    """The raw tables of one source: table -> its dlt column hints (the same a resource declares), in the
    schema the source loads into, and the indexes staging and dlt's merges look rows up by."""

    schema: str
    columns: Mapping[str, Mapping[str, Mapping[str, Any]]]
    indexes: Sequence[Index] = ()

    def hints(self, table: str) -> dict[str, dict[str, Any]]:
        """A table's column hints for a dlt resource: a copy (dlt completes the hints it is given in place)."""
        return copy.deepcopy({name: dict(hints) for name, hints in self.columns[table].items()})


def create_table_sql(schema: str, table: str, columns: Mapping[str, Mapping[str, Any]]) -> str:
    """`create table` for an empty raw table: the declared columns, then dlt's own."""
    declared = {name: hints for name, hints in columns.items() if name not in DLT_COLUMNS}
    definitions = []
    for name, hints in {**declared, **DLT_COLUMNS}.items():
        not_null = "" if hints.get("nullable", True) else " not null"
        definitions.append(f"{name} {POSTGRES_TYPES[hints['data_type']]}{not_null}")
    return f'create table "{schema}"."{table}" ({", ".join(definitions)})'


def ensure_tables(database_url: str, tables: RawTables, schema: str | None = None) -> list[str]:
    """Create the tables of `tables` no load has created yet (empty) and their indexes, in `schema` (the
    source's own by default); return the names of the tables created."""
    import psycopg2

    schema = schema or tables.schema
    created = []
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(f'create schema if not exists "{schema}"')
        cur.execute("select table_name from information_schema.tables where table_schema = %s", (schema,))
        existing = {row[0] for row in cur.fetchall()}
        for table, columns in tables.columns.items():
            if table not in existing:
                cur.execute(create_table_sql(schema, table, columns))
                created.append(table)
        for index in tables.indexes:
            name = index.name or f"{index.table}_{index.column}"
            on = f'"{schema}"."{index.table}" using {index.using} ({index.column})'
            cur.execute(f'create index if not exists "{name}" on {on}')
    return created


def add_missing_column(
    database_url: str, tables: RawTables, column: str, value: str, schema: str | None = None
) -> list[str]:
    """Add `column` (as `tables` declares it) to those of its tables that exist without it, filled with `value`
    on the rows already there (a warehouse loaded before the column existed: Stripe's `account`, whose rows
    are the legacy account's); return the tables changed. dlt sees the column there and does not add it."""
    import psycopg2

    schema = schema or tables.schema
    changed = []
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "select table_name from information_schema.tables t where table_schema = %s and not exists ("
            " select 1 from information_schema.columns c where c.table_schema = t.table_schema"
            " and c.table_name = t.table_name and c.column_name = %s)",
            (schema, column),
        )
        lacking = {row[0] for row in cur.fetchall()}
        for table, columns in tables.columns.items():
            if table not in lacking or column not in columns:
                continue
            hints = columns[column]
            not_null = "" if hints.get("nullable", True) else " not null"
            cur.execute(
                f'alter table "{schema}"."{table}" add column "{column}" {POSTGRES_TYPES[hints["data_type"]]}'
                f"{not_null} default %s",
                (value,),
            )
            cur.execute(f'alter table "{schema}"."{table}" alter column "{column}" drop default')
            changed.append(table)
    return changed
