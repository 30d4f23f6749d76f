"""Capture the SQL of team endpoints and admin pages, and EXPLAIN each SELECT.

Run with the gateway's environment: ``python -m bench.explain < request.json``.
Requests go through Django's test client in this process, so every query
is caught by ``connection.execute_wrapper``. Each SELECT is then run again
under ``EXPLAIN (ANALYZE, FORMAT JSON)``, which executes it: only plain
SELECTs are explained, never writes or ``SELECT ... FOR UPDATE``.

The JSON on stdout lists, per path, the query count, each SELECT's
execution time and the sequential scans of the large tables.
"""

import json
import os
import sys

import django

LARGE_TABLES = frozenset(
    {"jobs_job", "jobs_llmcall", "teams_credittransaction", "audit_auditentry"}
)


class QueryLog:
    """An execute wrapper that records each statement and its parameters."""

    def __init__(self):
        self.queries: list[tuple[str, object]] = []

    def __call__(self, execute, sql, params, many, context):
        self.queries.append((sql, params))
        return execute(sql, params, many, context)


def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


def explain(cursor, sql: str, params) -> dict:
    cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
    raw = cursor.fetchone()[0]
    document = json.loads(raw) if isinstance(raw, str) else raw
    root = document[0]
    scans = [
        {"table": node["Relation Name"], "rows": node.get("Actual Rows")}
        for node in plan_nodes(root["Plan"])
        if node.get("Node Type") == "Seq Scan"
        and node.get("Relation Name") in LARGE_TABLES
    ]
    return {
        "sql": " ".join(sql.split())[:400],
        "execution_ms": round(root.get("Execution Time", 0.0), 2),
        "seq_scans": scans,
    }


def is_plain_select(sql: str) -> bool:
    text = sql.lstrip().upper()
    return text.startswith("SELECT") and "FOR UPDATE" not in text


def capture(client, path: str, headers: dict) -> dict:
    from django.db import connection

    log = QueryLog()
    with connection.execute_wrapper(log):
        response = client.get(path, **headers)
    result = {"status": response.status_code, "query_count": len(log.queries)}
    plans = []
    with connection.cursor() as cursor:
        for sql, params in log.queries:
            if is_plain_select(sql):
                plans.append(explain(cursor, sql, params))
    result["queries"] = plans
    result["slowest_query_ms"] = max((p["execution_ms"] for p in plans), default=0)
    result["seq_scans"] = sorted(
        {scan["table"] for plan in plans for scan in plan["seq_scans"]}
    )
    return result


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saasllm.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    request = json.load(sys.stdin)
    team_client = Client(SERVER_NAME="127.0.0.1")
    team_headers = {"HTTP_AUTHORIZATION": f"Bearer {request['key']}"}
    admin_client = Client(SERVER_NAME="127.0.0.1")
    admin_client.force_login(
        get_user_model().objects.get(username=request["staff_username"])
    )
    admin_headers = {"HTTP_X_ADMIN_KEY": request["master_key"]}

    output = {}
    for path in request["team_paths"]:
        output[path] = capture(team_client, path, team_headers)
    for path in request["admin_api_paths"]:
        output[path] = capture(team_client, path, admin_headers)
    for path in request["admin_pages"]:
        output[path] = capture(admin_client, path, {})
    json.dump(output, sys.stdout)


if __name__ == "__main__":
    main()
