"""Warehouse administration: the read-only role BI tools connect with.

BI logins are members of one group role, BI_GROUP, which reads every table and view of `marts`
(including the ones dbt creates later: default privileges) except the columns marked as personal
data in the marts' yml (`config: {meta: {personal_data: true}}`): on those marts the group has a
column-level grant of the other columns, re-applied by a dbt post-hook each time the relation is
rebuilt (dbt_project/macros/personal_data.sql). A login created with `include_personal_data`
also gets SELECT on the whole of every mart, directly.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql

from saas_metrics.config import MARTS_SCHEMA, ConfigError, parse_database_url

# the group role BI logins belong to; dbt_project/macros/personal_data.sql names it too
BI_GROUP = "saas_metrics_bi"


@dataclass(frozen=True)
class BiRole:
    url: str  # with the password when one was set now, without it when the existing one was kept
    password_set: bool


def personal_columns(manifest_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Marts with personal columns, from a dbt manifest: {relation: (readable columns, personal columns)}."""
    manifest = json.loads(Path(manifest_path).read_text())
    found: dict[str, tuple[list[str], list[str]]] = {}
    for node in manifest["nodes"].values():
        # the marts folder (dbt builds it into marts_build and publishes it into marts: macros/publish.sql)
        if node.get("resource_type") != "model" or not node.get("original_file_path", "").startswith("models/marts/"):
            continue
        personal, readable = [], []
        for name, column in node.get("columns", {}).items():
            meta = {**(column.get("meta") or {}), **((column.get("config") or {}).get("meta") or {})}
            (personal if meta.get("personal_data") else readable).append(name)
        if personal:
            found[node.get("alias") or node["name"]] = (readable, personal)
    return found


def create_bi_role(
    database_url: str,
    role: str,
    *,
    rotate_password: bool = False,
    include_personal_data: bool = False,
    personal: dict[str, tuple[list[str], list[str]]] | None = None,
) -> BiRole:
    """Create (or update) a login role that can read `marts` and nothing else.

    An existing role keeps its password unless `rotate_password`: a BI tool's saved connection goes
    on working. `personal` ({mart: (readable columns, personal columns)}, see personal_columns) is
    applied to the marts that exist now; the dbt post-hook applies it to every rebuild.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ConfigError(f"role name must be lowercase letters, digits and _, got {role!r}")
    if role == BI_GROUP:
        raise ConfigError(f"{BI_GROUP} is the group BI logins belong to; choose another name")
    pg = parse_database_url(database_url)
    conn = psycopg2.connect(database_url)
    conn.autocommit = False
    ident = {"db": sql.Identifier(pg.dbname), "schema": sql.Identifier(MARTS_SCHEMA), "group": sql.Identifier(BI_GROUP)}
    password = None
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_roles where rolname = %s", (role,))
            exists = cur.fetchone() is not None
            login = sql.Identifier(role)
            if not exists or rotate_password:
                password = secrets.token_urlsafe(18)
                verb = "alter" if exists else "create"
                cur.execute(
                    sql.SQL(verb + " role {} with login password %s nosuperuser nocreatedb nocreaterole").format(login),
                    (password,),
                )
            else:
                cur.execute(sql.SQL("alter role {} with login nosuperuser nocreatedb nocreaterole").format(login))
            cur.execute("select 1 from pg_roles where rolname = %s", (BI_GROUP,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("create role {group} nologin").format(**ident))
            cur.execute(sql.SQL("create schema if not exists {schema}").format(**ident))
            for statement in (
                # PostgreSQL grants CONNECT and TEMP on every database to PUBLIC; TEMP can only be taken
                # from a role by taking it from PUBLIC (the warehouse's own user keeps it: dbt needs it)
                "revoke all on database {db} from {role}",
                "revoke all on database {db} from {group}",
                "revoke temporary on database {db} from public",
                "grant temporary on database {db} to current_user",
                "grant connect on database {db} to {role}",
                "revoke create on schema public from {role}",
                "grant usage on schema {schema} to {group}",
                "grant select on all tables in schema {schema} to {group}",
                "alter default privileges in schema {schema} grant select on tables to {group}",
                "grant {group} to {role}",
                # reading goes through the group (the personal-data rule applies); an earlier version
                # granted the login itself
                "revoke all on all tables in schema {schema} from {role}",
                "alter default privileges in schema {schema} revoke select on tables from {role}",
            ):
                cur.execute(sql.SQL(statement).format(role=login, **ident))
            for relation, (readable, _) in (personal or {}).items():
                cur.execute("select to_regclass(%s)", (f"{MARTS_SCHEMA}.{relation}",))
                if cur.fetchone()[0] is None:
                    continue
                target = sql.Identifier(MARTS_SCHEMA, relation)
                cur.execute(sql.SQL("revoke select on {} from {}").format(target, ident["group"]))
                if readable:
                    cur.execute(
                        sql.SQL("grant select ({}) on {} to {}").format(
                            sql.SQL(", ").join(map(sql.Identifier, readable)), target, ident["group"]
                        )
                    )
            if include_personal_data:
                cur.execute(sql.SQL("grant usage on schema {schema} to {role}").format(role=login, **ident))
                cur.execute(
                    sql.SQL("grant select on all tables in schema {schema} to {role}").format(role=login, **ident)
                )
                cur.execute(
                    sql.SQL("alter default privileges in schema {schema} grant select on tables to {role}").format(
                        role=login, **ident
                    )
                )
        conn.commit()
    finally:
        conn.close()
    auth = f"{role}:{password}" if password else role
    return BiRole(f"postgresql://{auth}@{pg.host}:{pg.port}/{pg.dbname}", password is not None)


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
