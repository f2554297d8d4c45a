"""PostgREST query-string grammar → parameterised SQL (the subset supabase-py sends).

Used by :mod:`maxcore.testing.postgrest_emulator`. Identifiers always go through
``psycopg.sql.Identifier``; values are bound parameters cast to the column's type,
so nothing from the request is ever spliced into SQL text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from psycopg import sql

RESERVED_PARAMS = frozenset({"select", "order", "limit", "offset", "on_conflict", "columns"})
OPERATORS = {
    "eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
    "like": "LIKE", "ilike": "ILIKE",
}


class QueryError(Exception):
    """A request PostgREST would refuse before reaching the database."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.hint = details, hint


@attrs.frozen
class Table:
    """A table as the schema cache knows it: column → SQL type, primary key."""

    name: str
    columns: Mapping[str, str]
    primary_key: tuple[str, ...]


@attrs.frozen
class Filter:
    column: str
    operator: str
    value: Any
    negate: bool = False


def parse_list(raw: str) -> list[str]:
    """``(a,"b,c",d)`` → ``["a", "b,c", "d"]`` (PostgREST's quoting, backslash escapes)."""
    if not (raw.startswith("(") and raw.endswith(")")):
        raise QueryError(400, "PGRST100", f'"failed to parse filter (in.{raw})"',
                         "expected a parenthesised list")
    items: list[str] = []
    body, i, current, quoted_item = raw[1:-1], 0, [], False
    in_quotes = False
    while i < len(body):
        ch = body[i]
        if in_quotes:
            if ch == "\\" and i + 1 < len(body):
                current.append(body[i + 1])
                i += 1
            elif ch == '"':
                in_quotes = False
            else:
                current.append(ch)
        elif ch == '"':
            in_quotes, quoted_item = True, True
        elif ch == ",":
            items.append("".join(current))
            current, quoted_item = [], False
        else:
            current.append(ch)
        i += 1
    if current or quoted_item or body:
        items.append("".join(current))
    return items


def parse_filter(column: str, raw: str) -> Filter:
    negate = False
    if raw.startswith("not."):
        negate, raw = True, raw[4:]
    operator, dot, value = raw.partition(".")
    if not dot or (operator not in OPERATORS and operator not in ("in", "is")):
        raise QueryError(400, "PGRST100", f'"failed to parse filter ({raw})" (line 1, column 1)',
                         f"unexpected operator in {column}={raw}")
    if operator == "in":
        return Filter(column, operator, parse_list(value), negate)
    if operator == "is":
        if value not in ("null", "not_null", "true", "false", "unknown"):
            raise QueryError(400, "PGRST100", f'"failed to parse filter (is.{value})"')
        return Filter(column, operator, value, negate)
    if operator in ("like", "ilike"):
        value = value.replace("*", "%")
    return Filter(column, operator, value, negate)


def parse_select(raw: str | None, table: Table) -> list[tuple[str, str]]:
    """``select=a,alias:b`` → ``[(a, a), (alias, b)]``; ``*`` → every column."""
    if raw is None or raw.strip() in ("", "*"):
        return [(c, c) for c in table.columns]
    out: list[tuple[str, str]] = []
    for part in raw.split(","):
        part = part.strip()
        if "(" in part or "::" in part or "->" in part:
            raise QueryError(400, "PGRST100", f"emulator: unsupported select item {part!r}")
        alias, _, column = part.rpartition(":")
        if part == "*":
            out.extend((c, c) for c in table.columns)
            continue
        check_column(table, column)
        out.append((alias or column, column))
    return out


def parse_order(raw: str | None, table: Table, qualifier: str) -> list[sql.Composable]:
    if not raw:
        return []
    terms: list[sql.Composable] = []
    for part in raw.split(","):
        column, *modifiers = part.strip().split(".")
        check_column(table, column)
        words: list[sql.Composable] = [sql.Identifier(qualifier, column)]
        for mod in modifiers:
            keyword = {"asc": "ASC", "desc": "DESC", "nullsfirst": "NULLS FIRST",
                       "nullslast": "NULLS LAST"}.get(mod)
            if keyword is None:
                raise QueryError(400, "PGRST100", f'"failed to parse order ({part})"')
            words.append(sql.SQL(keyword))
        terms.append(sql.SQL(" ").join(words))
    return terms


def parse_int(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise QueryError(400, "PGRST100", f'"failed to parse {name} ({raw})"')
    return int(raw)


def check_column(table: Table, column: str) -> None:
    if column not in table.columns:
        raise QueryError(400, "42703", f"column {table.name}.{column} does not exist")


def filters_from(params: Sequence[tuple[str, str]], table: Table) -> list[Filter]:
    filters: list[Filter] = []
    for name, raw in params:
        if name in RESERVED_PARAMS:
            continue
        if name in ("or", "and", "not.or", "not.and"):
            raise QueryError(400, "PGRST100", f"emulator: logical filter {name!r} not supported")
        check_column(table, name)
        filters.append(parse_filter(name, raw))
    return filters


def where_clause(filters: Sequence[Filter], table: Table, qualifier: str | None = None
                 ) -> tuple[sql.Composable, list[Any]]:
    """``WHERE`` text and parameters; each value is cast to its column's type."""
    if not filters:
        return sql.SQL(""), []
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for f in filters:
        column = sql.Identifier(qualifier, f.column) if qualifier else sql.Identifier(f.column)
        col_type = sql.SQL(table.columns[f.column])
        if f.operator == "is":
            condition: sql.Composable = sql.SQL("{} IS {}").format(
                column, sql.SQL(f.value.replace("_", " ").upper()))
        elif f.operator == "in":
            condition = sql.SQL("{} = ANY(CAST({} AS {}[]))").format(
                column, sql.Placeholder(), col_type)
            params.append(list(f.value))
        elif f.operator in ("like", "ilike"):
            condition = sql.SQL("{}::text {} {}").format(
                column, sql.SQL(OPERATORS[f.operator]), sql.Placeholder())
            params.append(f.value)
        else:
            condition = sql.SQL("{} {} CAST({} AS {})").format(
                column, sql.SQL(OPERATORS[f.operator]), sql.Placeholder(), col_type)
            params.append(f.value)
        parts.append(sql.SQL("NOT ({})").format(condition) if f.negate else condition)
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params


def projection(select: Sequence[tuple[str, str]], source: str) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(sql.Identifier(source, column), sql.Identifier(alias))
        for alias, column in select
    )


def insert_columns(rows: list[dict[str, Any]], columns_param: str | None, table: Table) -> list[str]:
    """The ``columns=`` parameter (quoted names) or the union of the rows' keys."""
    if columns_param:
        names = [c.strip().strip('"') for c in columns_param.split(",") if c.strip()]
    else:
        names = []
        for row in rows:
            names.extend(k for k in row if k not in names)
    for name in names:
        if name not in table.columns:
            raise QueryError(400, "PGRST204",
                             f"Could not find the '{name}' column of '{table.name}' in the schema cache")
    return names


# -- plans: one SQL statement per request ------------------------------------------

AGGREGATE = sql.SQL("SELECT coalesce(json_agg(_r), '[]')::text, count(*) FROM ({}) _r")


@attrs.frozen
class Plan:
    """The statement for one request. It yields ``(json_text, row_count)`` when
    ``returns_rows``; otherwise the caller uses the cursor's rowcount."""

    kind: str  # read | insert | update | delete | rpc
    table: str
    statement: sql.Composable
    params: list[Any]
    returns_rows: bool = True
    offset: int = 0
    count_statement: sql.Composable | None = None
    filters: tuple[Filter, ...] = ()
    rows: tuple[dict[str, Any], ...] = ()

    def tenant_problem(self, column: str) -> str | None:
        """Why this request does not pin ``column`` to one value, or None."""
        pinned = {str(f.value) for f in self.filters
                  if f.column == column and f.operator == "eq" and not f.negate and f.value}
        if self.kind in ("read", "update", "delete") and len(pinned) != 1:
            return f"no {column}=eq.<value> filter"
        if self.kind == "insert" and any(not row.get(column) for row in self.rows):
            return f"a written row has no {column}"
        if self.kind == "update" and column in self.rows[0] and {str(self.rows[0][column])} != pinned:
            return f"the update moves rows to another {column}"
        return None


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise QueryError(400, "PGRST102", "Empty or invalid json", str(exc)) from exc


def plan_request(method: str, path: str, query: Sequence[tuple[str, str]], body: bytes,
                 tables: Mapping[str, Table], functions: Mapping[str, tuple[bool, list[str], list[str]]],
                 prefer: Mapping[str, str]) -> Plan:
    if path.startswith("rpc/"):
        return _plan_rpc(method, path[4:], query, body, functions)
    table = tables.get(path)
    if table is None:
        raise QueryError(404, "PGRST205", f"Could not find the table 'public.{path}' in the schema cache")
    params = dict(query)
    target = sql.Identifier("public", table.name)
    select = parse_select(params.get("select"), table)
    filters = filters_from(query, table)
    where, where_params = where_clause(filters, table, "_t")
    returning = prefer.get("return") == "representation"
    if method in ("GET", "HEAD"):
        order = parse_order(params.get("order"), table, "_t")
        limit, offset = parse_int("limit", params.get("limit")), parse_int("offset", params.get("offset"))
        inner = sql.SQL("SELECT {} FROM {} AS _t{}").format(projection(select, "_t"), target, where)
        if order:
            inner += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(order)
        if limit is not None:
            inner += sql.SQL(" LIMIT {}").format(sql.Literal(limit))
        if offset:
            inner += sql.SQL(" OFFSET {}").format(sql.Literal(offset))
        count = None
        if prefer.get("count") == "exact":
            count = sql.SQL("SELECT count(*) FROM {} AS _t{}").format(target, where)
        return Plan("read", table.name, AGGREGATE.format(inner), where_params, offset=offset or 0,
                    count_statement=count, filters=tuple(filters))
    if method == "POST":
        data = _json_body(body)
        rows = [data] if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise QueryError(400, "PGRST102", "All object keys must match")
        columns = insert_columns(rows, params.get("columns"), table)
        if not columns:
            raise QueryError(400, "PGRST102", "Empty or invalid json")
        col_list = sql.SQL(", ").join(map(sql.Identifier, columns))
        statement = sql.SQL(
            "INSERT INTO {t} AS _t ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{t}, %s::json)"
        ).format(t=target, cols=col_list)
        resolution = prefer.get("resolution")
        if resolution in ("merge-duplicates", "ignore-duplicates"):
            conflict = [c.strip() for c in params.get("on_conflict", "").split(",") if c.strip()]
            conflict = conflict or list(table.primary_key)
            for column in conflict:
                check_column(table, column)
            statement += sql.SQL(" ON CONFLICT ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, conflict)))
            if resolution == "ignore-duplicates":
                statement += sql.SQL(" DO NOTHING")
            else:
                statement += sql.SQL(" DO UPDATE SET ") + sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in columns)
        return _writing("insert", table, statement, [json.dumps(rows)], select, returning,
                        filters=(), rows=tuple(rows))
    if method in ("PATCH", "DELETE") and not filters:
        verb = "UPDATE" if method == "PATCH" else "DELETE"
        # Supabase runs pg-safeupdate: an unfiltered UPDATE/DELETE is refused.
        raise QueryError(400, "21000", f"{verb} requires a WHERE clause")
    if method == "PATCH":
        patch = _json_body(body)
        if not isinstance(patch, dict) or not patch:
            raise QueryError(400, "PGRST102", "Empty or invalid json")
        columns = insert_columns([patch], None, table)
        statement = sql.SQL(
            "UPDATE {t} AS _t SET {sets} FROM json_populate_record(NULL::{t}, %s::json) AS _b{w}"
        ).format(t=target, w=where, sets=sql.SQL(", ").join(
                                sql.SQL("{c} = _b.{c}").format(c=sql.Identifier(c)) for c in columns))
        return _writing("update", table, statement, [json.dumps(patch), *where_params], select,
                        returning, filters=tuple(filters), rows=(patch,))
    if method == "DELETE":
        statement = sql.SQL("DELETE FROM {} AS _t{}").format(target, where)
        return _writing("delete", table, statement, where_params, select, returning,
                        filters=tuple(filters), rows=())
    raise QueryError(405, "PGRST117", f"Unsupported HTTP method: {method}")


def _writing(kind: str, table: Table, statement: sql.Composable, params: list[Any],
             select: list[tuple[str, str]], returning: bool, *, filters: tuple[Filter, ...],
             rows: tuple[dict[str, Any], ...]) -> Plan:
    # Without return=representation there is no RETURNING, so (like PostgREST) a write
    # needs no SELECT policy on the rows it writes.
    if returning:
        statement = sql.SQL("WITH _w AS ({} RETURNING _t.*) ").format(statement) + AGGREGATE.format(
            sql.SQL("SELECT {} FROM _w AS _t").format(projection(select, "_t")))
    return Plan(kind, table.name, statement, params, returns_rows=returning, filters=filters, rows=rows)


def _plan_rpc(method: str, name: str, query: Sequence[tuple[str, str]], body: bytes,
              functions: Mapping[str, tuple[bool, list[str], list[str]]]) -> Plan:
    args: dict[str, Any] = dict(query) if method in ("GET", "HEAD") else (_json_body(body) or {})
    if not isinstance(args, dict):
        raise QueryError(400, "PGRST102", "RPC parameters must be a JSON object")
    found = functions.get(name)
    if found is None or set(args) - set(found[1]):
        signature = ", ".join(sorted(args))
        raise QueryError(404, "PGRST202",
                         f"Could not find the function public.{name}({signature}) in the schema cache")
    returns_set, names, types = found
    arg_types = dict(zip(names, types, strict=False))
    call_args, params = [], []
    for arg, value in args.items():
        call_args.append(sql.SQL("{} => CAST(%s AS {})").format(sql.Identifier(arg), sql.SQL(arg_types[arg])))
        json_typed = arg_types[arg] in ("json", "jsonb")
        params.append(json.dumps(value) if json_typed or not isinstance(value, str) else value)
    call = sql.SQL("{}({})").format(sql.Identifier("public", name), sql.SQL(", ").join(call_args))
    if returns_set:
        statement = AGGREGATE.format(sql.SQL("SELECT * FROM {}").format(call))
    else:
        statement = sql.SQL("SELECT to_json({})::text, 1").format(call)
    return Plan("rpc", name, statement, params)
