"""Warehouse administration: the read-only role BI tools connect with."""

from __future__ import annotations

import re
import secrets

import psycopg2
from psycopg2 import sql

from saas_metrics.config import MARTS_SCHEMA, ConfigError, parse_database_url


def create_bi_role(database_url: str, role: str) -> str:
    """Create (or reset the password of) a login role that can read `marts` and nothing else.

    Returns the role's connection URL. Tables dbt creates later stay readable (default privileges).
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ConfigError(f"role name must be lowercase letters, digits and _, got {role!r}")
    password = secrets.token_urlsafe(18)
    pg = parse_database_url(database_url)
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_roles where rolname = %s", (role,))
        verb = "alter" if cur.fetchone() else "create"
        cur.execute(
            sql.SQL(verb + " role {} with login password %s nosuperuser nocreatedb nocreaterole").format(
                sql.Identifier(role)
            ),
            (password,),
        )
        cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(MARTS_SCHEMA)))
        statements = [
            "revoke all on database {db} from {role}",
            "grant connect on database {db} to {role}",
            "revoke create on schema public from {role}",
            "grant usage on schema {schema} to {role}",
            "grant select on all tables in schema {schema} to {role}",
            "alter default privileges in schema {schema} grant select on tables to {role}",
        ]
        for statement in statements:
            cur.execute(
                sql.SQL(statement).format(
                    db=sql.Identifier(pg.dbname), role=sql.Identifier(role), schema=sql.Identifier(MARTS_SCHEMA)
                )
            )
    conn.close()
    return f"postgresql://{role}:{password}@{pg.host}:{pg.port}/{pg.dbname}"


def replace_table(
    conn, schema: str, table: str, columns: list[tuple[str, str]], rows, comment: str | None = None
) -> int:
    """Replace `schema.table`'s rows with `rows` (a pandas DataFrame with `columns`' names) in the
    caller's transaction: readers see the old rows until the caller commits, never a half-written
    table. A table of the same columns and types is truncated (views on it survive); otherwise it is
    dropped and created.

    `columns` are (name, PostgreSQL type) pairs: the table's types are explicit, not guessed from the
    frame. Rows are streamed with COPY. Returns the number of rows written. The BI role reads the new
    table through the default privileges `create_bi_role` set on the schema."""
    import io

    frame = rows[[name for name, _ in columns]]
    ident = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    with conn.cursor() as cur:
        cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        cur.execute(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute"
            " where attrelid = to_regclass(%s) and attnum > 0 and not attisdropped order by attnum",
            (f'"{schema}"."{table}"',),
        )
        if [tuple(row) for row in cur.fetchall()] == [tuple(column) for column in columns]:
            # same shape: emptied, so views a BI tool built on it survive
            cur.execute(sql.SQL("truncate table {}").format(ident))
        else:
            cur.execute(sql.SQL("drop table if exists {}").format(ident))
            cur.execute(
                sql.SQL("create table {} ({})").format(
                    ident,
                    sql.SQL(", ").join(sql.SQL("{} " + type_).format(sql.Identifier(name)) for name, type_ in columns),
                )
            )
        if comment:
            cur.execute(sql.SQL("comment on table {} is %s").format(ident), (comment,))
        if len(frame):
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S")
            buffer.seek(0)
            cur.copy_expert(
                sql.SQL("copy {} from stdin with (format csv, null '\\N')").format(ident).as_string(conn), buffer
            )
    return len(frame)
