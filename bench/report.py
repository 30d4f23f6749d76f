"""Render a benchmark's JSON results as a Markdown summary."""


def cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {count}" for key, count in value.items()) or "none"
    return str(value)


def table(headers: list[str], rows: list[list]) -> list[str]:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines + [""]


def latency(stats: dict | None, name: str):
    return (stats or {}).get("latency_ms", {}).get(name)


def overhead_section(result: dict) -> list[str]:
    lines = ["## 1. Per-call overhead", ""]
    if result.get("chat_completions_skipped"):
        lines += [f"`/v1/chat/completions`: {result['chat_completions_skipped']}.", ""]
    rows = []
    for row in result["rows"]:
        floor = row["floor"]["kinds"].get("call")
        for target in ("job_api", "chat_completions", "litellm"):
            comparison = row.get(f"{target}_vs_floor")
            if comparison is None:
                continue
            header = comparison.get("overhead_header_ms") or {}
            rows.append(
                [
                    row["provider_latency_ms"],
                    row["clients"],
                    target,
                    latency(floor, "p50"),
                    latency(floor, "p99"),
                    comparison["added_p50_ms"],
                    comparison["added_p99_ms"],
                    comparison["cpu_ms_per_call"],
                    header.get("p50"),
                    header.get("p99"),
                    comparison["calls_per_second"],
                    comparison["errors"],
                ]
            )
    lines += table(
        [
            "provider ms",
            "clients",
            "path",
            "floor p50",
            "floor p99",
            "added p50",
            "added p99",
            "CPU ms/call",
            "header p50",
            "header p99",
            "calls/s",
            "errors",
        ],
        rows,
    )
    lines += [
        "Latencies in ms. *floor*: the fake provider called directly; *added*: "
        "the path's call latency minus the floor's; *CPU ms/call*: CPU time of "
        "the gateway's (or the LiteLLM proxy's) processes per successful call, "
        "the job's create and complete included; *header*: "
        "`X-Gateway-Overhead-Ms` when the gateway sends it.",
        "",
    ]
    return lines


def held_section(result: dict) -> list[str]:
    rows = [
        [
            label,
            run["calls"],
            run["start_spread_seconds"],
            run["ok"],
            run["errors"],
            latency(run, "p50"),
            latency(run, "p99"),
            run["throughput_per_second"],
            run["ideal_per_second"],
            run["throughput_vs_ideal"],
            run["resources"]["max_database_connections"],
            run["resources"]["max_rss_mib"].get("gateway"),
        ]
        for label, run in result.items()
        if isinstance(run, dict) and "calls" in run
    ]
    return [
        "## 2. Held calls (10 s provider latency)",
        "",
        *table(
            [
                "starts",
                "calls",
                "spread s",
                "ok",
                "errors",
                "p50 ms",
                "p99 ms",
                "calls/s",
                "ideal calls/s",
                "ratio",
                "max PG conns",
                "max RSS MiB",
            ],
            rows,
        ),
    ]


def streams_section(result: dict) -> list[str]:
    rows = []
    for name in ("floor", "gateway"):
        streams = result[name]
        rows.append(
            [
                name,
                streams["streams"],
                streams["complete"],
                streams["first_event_ms"]["p50"],
                streams["first_event_ms"]["p99"],
                streams["gap_ms"]["p50"],
                streams["gap_ms"]["p99"],
                streams["events_per_stream"]["p50"],
                streams["errors"],
            ]
        )
    return [
        f"## 3. Streams ({result['streams']} concurrent, provider chunks "
        f"{result['provider_interval_ms']} ms apart)",
        "",
        *table(
            [
                "path",
                "streams",
                "complete",
                "first event p50",
                "first event p99",
                "gap p50",
                "gap p99",
                "events",
                "errors",
            ],
            rows,
        ),
    ]


def data_section(result: dict) -> list[str]:
    lines = [f"## 4. Data at scale (team {result['team']})", ""]
    rows = [
        [
            name,
            endpoint["requests"],
            latency(endpoint, "p50"),
            latency(endpoint, "p95"),
            latency(endpoint, "p99"),
            endpoint["errors"],
        ]
        for name, endpoint in result["endpoints"].items()
    ]
    lines += table(
        ["endpoint (16 clients)", "requests", "p50", "p95", "p99", "errors"], rows
    )
    admin_rows = [
        [
            name,
            timing.get("skipped") or "",
            latency(timing, "p50"),
            latency(timing, "p95"),
            timing.get("errors"),
        ]
        for name, timing in result["admin"].items()
    ]
    lines += table(
        ["admin page (one at a time)", "note", "p50", "p95", "errors"], admin_rows
    )
    explain = result.get("explain", {})
    if "error" in explain:
        lines += [f"EXPLAIN failed: `{explain['error'][-300:]}`", ""]
    else:
        explain_rows = [
            [
                path,
                found["status"],
                found["query_count"],
                found["slowest_query_ms"],
                ", ".join(found["seq_scans"]) or "none",
            ]
            for path, found in explain.items()
        ]
        lines += table(
            [
                "path (EXPLAIN ANALYZE)",
                "status",
                "queries",
                "slowest ms",
                "Seq Scan on",
            ],
            explain_rows,
        )
    return lines


def scaleout_section(result: dict) -> list[str]:
    counts = result["counts"]
    ledger = result["check_ledger"]
    return [
        "## 5. Scale-out (64 clients, job API, provider 0 ms)",
        "",
        *table(
            ["instances", "calls/s", "call p50", "call p99", "errors"],
            [
                [
                    count,
                    result["calls_per_second"][label],
                    latency(result[key]["kinds"].get("call"), "p50"),
                    latency(result[key]["kinds"].get("call"), "p99"),
                    result[key]["kinds"].get("call", {}).get("errors"),
                ]
                for count, label, key in (
                    (1, "one", "one_instance"),
                    (2, "two", "two_instances"),
                )
            ],
        ),
        f"Jobs by status: {cell(counts['jobs_by_status'])}; calls recorded: "
        f"{counts['calls']}; completed responses: {result['completed_responses']}; "
        f"counts match: {result['counts_match']}. check_ledger: "
        f"{ledger.get('mismatch_count', ledger.get('error'))} mismatch(es) over "
        f"{ledger.get('teams_checked')} teams.",
        "",
    ]


def hot_section(result: dict) -> list[str]:
    kinds = result["summary"]["kinds"]
    ledger = result["check_ledger"]
    return [
        "## 6. Hot team (64 clients, one team)",
        "",
        *table(
            ["request", "requests", "ok", "p50", "p99", "errors"],
            [
                [
                    kind,
                    stats["requests"],
                    stats["ok"],
                    latency(stats, "p50"),
                    latency(stats, "p99"),
                    stats["errors"],
                ]
                for kind, stats in kinds.items()
            ],
        ),
        f"Completed jobs: {result['completed_jobs']}; remaining credits "
        f"{result['balance_before']['remaining']} -> "
        f"{result['balance_after']['remaining']}; balance matches: "
        f"{result['balance_matches']}; errors other than 402: "
        f"{cell(result['unexpected_errors'])}; check_ledger: "
        f"{ledger.get('mismatch_count', ledger.get('error'))} mismatch(es).",
        "",
    ]


SECTIONS = {
    "overhead": overhead_section,
    "held": held_section,
    "streams": streams_section,
    "data": data_section,
    "scaleout": scaleout_section,
    "hot": hot_section,
}


def markdown(results: dict) -> str:
    machine = results["machine"]
    lines = [
        f"# saasllm benchmark, {results['mode']} mode",
        "",
        f"Started {results['started_at']} on commit {results['commit']}; "
        f"took {results.get('seconds')} s. Machine: {machine['cpu']}, "
        f"{machine['logical_cpus']} logical CPUs shared by the load generator, "
        f"the gateway, PostgreSQL and the fake provider; "
        f"{machine['memory_gib']} GiB memory; Python {machine['python']}.",
        "",
    ]
    if "seed" in results:
        seed = results["seed"]
        verb = "reused" if seed["reused"] else f"seeded in {seed.get('seconds')} s"
        lines += [
            f"Seed data: {seed['teams']} teams, {seed['jobs']:,} jobs, "
            f"{seed['calls']:,} calls ({verb}).",
            "",
        ]
    if "litellm" in results:
        lines += [f"LiteLLM proxy: {results['litellm']['skipped']}", ""]
    # In the numbered order of docs/benchmarks.md, whatever order they ran in.
    for name in SECTIONS:
        if name not in results["scenarios"]:
            continue
        result = results["scenarios"][name]
        if "skipped" in result:
            lines += [f"## {name}", "", f"Skipped: {result['skipped']}.", ""]
        elif "error" in result:
            lines += [f"## {name}", "", f"Failed: `{result['error']}`", ""]
        else:
            lines += SECTIONS[name](result)
    return "\n".join(lines)
