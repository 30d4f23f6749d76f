"""Fill PostgreSQL with benchmark data: organizations, teams, jobs, calls, ledger.

The rows are built by set-based SQL (``INSERT ... SELECT FROM
generate_series``), so a million calls take minutes, not hours. Every
pseudo-random choice hashes the row number with ``--seed``, so one seed
always gives the same data. Balances are derived from the ledger rows the
command writes, so ``check_ledger`` passes afterwards.

Benchmark organizations and teams have ids starting with ``bench-seed-``;
``--reset`` and ``--delete-only`` remove those and nothing else.
"""

import time
from dataclasses import dataclass

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from catalog.models import ProviderCredential
from jobs.models import Job, LLMCall
from ratelimits.models import RateLimitCounter
from teams.models import CreditTransaction, Organization, Team, VirtualKey

ID_PREFIX = "bench-seed-"
NAME_PREFIX = "Bench "
# Open jobs are the ones created this recently; older jobs are closed.
OPEN_JOB_WINDOW_SECONDS = 3600
# Aliases the seeded calls name, with the prices (USD per million tokens) in
# force at the time: (alias, provider, provider model, input, output).
MODELS = (
    ("chat-fast", "openai", "gpt-4o-mini", "0.15", "0.60"),
    ("chat-smart", "openai", "gpt-4o", "2.50", "10.00"),
    ("claude-fast", "anthropic", "claude-3-5-haiku", "0.80", "4.00"),
)
JOB_TYPES = ("ticket_triage", "summarize", "translate", "classify", "extract")
PURPOSES = ("classify", "summarize", "draft", "extract", "review")


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


@dataclass(frozen=True)
class SeedSize:
    organizations: int
    teams: int
    jobs: int
    calls: int
    days: int
    seed: int


class Command(BaseCommand):
    help = (
        "Seed PostgreSQL with benchmark organizations, teams, jobs, LLM calls "
        "and ledger rows whose sums match the teams' balances."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--organizations",
            type=positive_int,
            default=50,
            help="Organizations to create; teams are spread over them (default 50).",
        )
        parser.add_argument(
            "--teams", type=positive_int, default=1000, help="Teams (default 1000)."
        )
        parser.add_argument(
            "--jobs", type=positive_int, default=100_000, help="Jobs (default 100000)."
        )
        parser.add_argument(
            "--calls",
            type=positive_int,
            default=1_000_000,
            help="LLM calls, spread over the jobs at random (default 1000000).",
        )
        parser.add_argument(
            "--days",
            type=positive_int,
            default=90,
            help="Days before now over which jobs are created (default 90).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=1,
            help="Seed of the pseudo-random choices; a seed always gives the "
            "same data (default 1).",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help=f"Delete earlier benchmark data (ids starting {ID_PREFIX}) first.",
        )
        parser.add_argument(
            "--delete-only",
            action="store_true",
            help="Delete earlier benchmark data and seed nothing.",
        )

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError(
                "seed_bench needs PostgreSQL: it generates rows with "
                "generate_series and hash functions that SQLite lacks. Set "
                "DATABASE_URL=postgres://... and run it again."
            )
        size = SeedSize(
            organizations=min(options["organizations"], options["teams"]),
            teams=options["teams"],
            jobs=options["jobs"],
            calls=options["calls"],
            days=options["days"],
            seed=options["seed"],
        )
        started = time.monotonic()

        if options["reset"] or options["delete_only"]:
            deleted = delete_bench_data()
            self.stdout.write(
                f"Deleted {deleted} earlier benchmark row(s) in "
                f"{time.monotonic() - started:.1f} s."
            )
            if options["delete_only"]:
                return
        elif Organization.objects.filter(pk__startswith=ID_PREFIX).exists():
            raise CommandError(
                f"Benchmark data (organizations {ID_PREFIX}*) already exists. "
                "Pass --reset to replace it."
            )

        seeder = Seeder(size, self.stderr.write)
        counts = seeder.run()
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Seeded {counts['organizations']:,} organizations, "
            f"{counts['teams']:,} teams, {counts['jobs']:,} jobs, "
            f"{counts['calls']:,} LLM calls and {counts['ledger']:,} ledger rows "
            f"in {elapsed:.1f} s."
        )


def delete_bench_data() -> int:
    """Delete every row that belongs to an organization whose id has the prefix."""
    teams = f"SELECT id FROM {Team._meta.db_table} WHERE organization_id LIKE %s"
    team_children = (
        CreditTransaction,
        LLMCall,
        Job,
        VirtualKey,
        Team.access_groups.through,
        RateLimitCounter,
    )
    pattern = ID_PREFIX + "%"
    deleted = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for model in team_children:
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE team_id IN ({teams})",
                [pattern],
            )
            deleted += cursor.rowcount
        for model, column in (
            (Team, "organization_id"),
            (ProviderCredential, "organization_id"),
            (Organization, "id"),
        ):
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE {column} LIKE %s",
                [pattern],
            )
            deleted += cursor.rowcount
    return deleted


def default_columns(model, listed: str, derived: dict | None = None):
    """Return SQL for the columns of ``model`` that an INSERT does not list.

    Columns added to a model after this command was written get their
    field's default, or the SQL expression that ``derived`` maps their name
    to. Returns the column list and the value list, each starting with a
    comma, and the parameters of the values.
    """
    named = {name.strip() for name in listed.split(",")}
    derived = derived or {}
    columns, values, params = [], [], {}
    for field in model._meta.concrete_fields:
        if field.column in named:
            continue
        columns.append(field.column)
        if field.column in derived:
            values.append(derived[field.column])
            continue
        default = field.get_default()
        if default is None and not field.null:
            raise CommandError(
                f"seed_bench has no value for the new column {field.column} of "
                f"{model._meta.db_table}; give the field a default or add it to "
                "the command."
            )
        name = f"default_{model._meta.db_table}_{field.column}"
        values.append(f"%({name})s")
        params[name] = field.get_db_prep_save(default, connection)
    if not columns:
        return "", "", {}
    return ", " + ", ".join(columns), ", " + ", ".join(values), params


def sql_text_array(values) -> str:
    """Return a PostgreSQL text array literal of fixed, quote-free strings."""
    return "(ARRAY[" + ", ".join(f"'{value}'" for value in values) + "])"


class Seeder:
    """Run the seeding statements in one transaction, timing each phase."""

    def __init__(self, size: SeedSize, log):
        self.size = size
        self.log = log
        self.params = {
            "prefix": ID_PREFIX,
            "name_prefix": NAME_PREFIX,
            "seed_text": f"{ID_PREFIX}{size.seed}",
            "organizations": size.organizations,
            "teams": size.teams,
            "jobs": size.jobs,
            "calls": size.calls,
            "span_seconds": size.days * 86400,
            "open_window": OPEN_JOB_WINDOW_SECONDS,
            "now": timezone.now(),
        }

    def random(self, row: str, stream: int) -> str:
        """Return SQL for a uniform value in [0, 1) drawn for ``row``.

        ``hashint8extended`` hashes the row number with a salt made of the
        seed and ``stream``, so each stream gives independent, repeatable
        values, also under parallel query. The low 52 bits fill a double.
        """
        salt = self.size.seed * 1000 + stream
        return (
            f"((hashint8extended(({row})::bigint, {salt}) & 4503599627370495)"
            "::double precision / 4503599627370496.0)"
        )

    def run(self) -> dict:
        phases = (
            ("organizations and teams", self.insert_teams),
            ("jobs (staging)", self.stage_jobs),
            ("LLM calls", self.insert_calls),
            ("job totals and charges", self.settle_jobs),
            ("jobs", self.insert_jobs),
            ("ledger", self.insert_ledger),
            ("team balances", self.update_balances),
            ("foreign key checks", self.check_constraints),
        )
        with transaction.atomic(), connection.cursor() as cursor:
            # Local to this transaction: large sorts for the window functions
            # stay in memory, and the commit does not wait for the WAL flush.
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute("SET LOCAL synchronous_commit = off")
            # Left over when an enclosing transaction (a test's) did not end,
            # as is an earlier run's SET CONSTRAINTS ALL IMMEDIATE. Calls are
            # inserted before their jobs, so the foreign keys must be deferred.
            cursor.execute("DROP TABLE IF EXISTS bench_team, bench_job")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            for name, phase in phases:
                started = time.monotonic()
                rows = phase(cursor)
                self.log(f"  {name}: {rows:,} rows, {time.monotonic() - started:.1f} s")
        # VACUUM also marks the pages all-visible, which index-only scans
        # need. On a live database autovacuum does that, but only later. It
        # cannot run inside a transaction, such as a test's.
        command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
        started = time.monotonic()
        with connection.cursor() as cursor:
            for model in (Organization, Team, Job, LLMCall, CreditTransaction):
                cursor.execute(f"{command} {model._meta.db_table}")
        self.log(f"  {command}: {time.monotonic() - started:.1f} s")
        return self.counts()

    def counts(self) -> dict:
        bench_teams = Team.objects.filter(organization__id__startswith=ID_PREFIX)
        return {
            "organizations": Organization.objects.filter(
                pk__startswith=ID_PREFIX
            ).count(),
            "teams": bench_teams.count(),
            "jobs": self.size.jobs,
            "calls": self.size.calls,
            "ledger": CreditTransaction.objects.filter(team__in=bench_teams).count(),
        }

    def insert_teams(self, cursor) -> int:
        columns = "id, name, status, metadata, created_at, updated_at"
        more_columns, more_values, params = default_columns(Organization, columns)
        cursor.execute(
            f"""
            INSERT INTO {Organization._meta.db_table} ({columns}{more_columns})
            SELECT %(prefix)s || 'org-' || lpad(g::text, 4, '0'),
                   %(name_prefix)s || 'organization ' || g,
                   'active', '{{}}'::jsonb,
                   %(now)s - (%(span_seconds)s + 86400) * interval '1 second',
                   %(now)s {more_values}
            FROM generate_series(1, %(organizations)s) AS g
            """,
            {**self.params, **params},
        )
        organizations = cursor.rowcount
        r = self.random
        # Most teams are charged per job; a tenth per dollar, a tenth per token.
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE bench_team ON COMMIT DROP AS
            SELECT g AS seq,
                   %(prefix)s || 'team-' || lpad(g::text, 5, '0') AS id,
                   %(prefix)s || 'org-'
                       || lpad((1 + (g - 1) %% %(organizations)s)::text, 4, '0')
                       AS organization_id,
                   CASE WHEN {r("g", 1)} < 0.8 THEN 'job_based'
                        WHEN {r("g", 1)} < 0.9 THEN 'consumption_usd'
                        ELSE 'consumption_tokens' END AS budget_mode,
                   CASE WHEN {r("g", 2)} < 0.5 THEN 0 ELSE 20 END::numeric
                       AS markup_percent,
                   100::numeric AS credits_per_dollar,
                   1000 AS tokens_per_credit
            FROM generate_series(1, %(teams)s) AS g
            """,
            self.params,
        )
        cursor.execute("ALTER TABLE bench_team ADD PRIMARY KEY (seq)")
        columns = (
            "id, organization_id, name, status, metadata, credits_allocated, "
            "credits_used, credits_held, budget_mode, credits_per_dollar, "
            "tokens_per_credit, markup_percent, max_calls_per_job, "
            "auto_refill_enabled, refill_period, created_at, updated_at"
        )
        more_columns, more_values, params = default_columns(Team, columns)
        cursor.execute(
            f"""
            INSERT INTO {Team._meta.db_table} ({columns}{more_columns})
            SELECT id, organization_id, %(name_prefix)s || 'team ' || seq,
                   'active', '{{}}'::jsonb, 0, 0, 0, budget_mode,
                   credits_per_dollar, tokens_per_credit, markup_percent, 500,
                   false, '',
                   %(now)s - (%(span_seconds)s + 86400) * interval '1 second',
                   %(now)s {more_values}
            FROM bench_team
            """,
            {**self.params, **params},
        )
        return organizations + cursor.rowcount

    def stage_jobs(self, cursor) -> int:
        """Draw each job's team, times and status into a temporary table.

        Teams are skewed: a job's team index is the square of a uniform
        draw, so the first teams have many jobs and the last ones few, as
        on a real gateway.
        """
        r = self.random
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE bench_job ON COMMIT DROP AS
            SELECT g AS seq,
                   md5(%(seed_text)s || ':job:' || g)::uuid AS id,
                   t.id AS team_id,
                   t.organization_id,
                   t.budget_mode,
                   t.credits_per_dollar,
                   t.tokens_per_credit,
                   t.markup_percent,
                   (%(now)s - %(span_seconds)s * {r("g", 3)} * interval '1 second')
                       AS created_at,
                   {r("g", 4)} AS status_draw,
                   {r("g", 5)} AS duration_draw,
                   {sql_text_array(JOB_TYPES)}[1 + floor({len(JOB_TYPES)}
                       * {r("g", 6)})::int] AS job_type,
                   'user-' || floor(500 * {r("g", 7)})::int AS user_id,
                   {r("g", 8)} < 0.01 AS is_refunded,
                   0 AS call_count,
                   0 AS successful_calls,
                   0::bigint AS total_tokens,
                   0::numeric AS total_cost_usd
            FROM generate_series(1, %(jobs)s) AS g
            JOIN bench_team AS t
              ON t.seq = 1 + floor(%(teams)s * power({r("g", 2)}, 2))::int
            """,
            self.params,
        )
        staged = cursor.rowcount
        cursor.execute(
            """
            ALTER TABLE bench_job
                ADD COLUMN status varchar(20),
                ADD COLUMN completed_at timestamptz,
                ADD COLUMN credits_held bigint NOT NULL DEFAULT 0,
                ADD COLUMN credits_charged bigint NOT NULL DEFAULT 0,
                ADD COLUMN accrued_credits numeric NOT NULL DEFAULT 0,
                ADD PRIMARY KEY (seq)
            """
        )
        # Recent jobs are still in progress; older ones closed after 30 s to
        # 5 min: 86% completed, 8% failed, 6% cancelled.
        cursor.execute(
            """
            UPDATE bench_job SET
                status = CASE
                    WHEN created_at > %(now)s - %(open_window)s * interval '1 second'
                        THEN 'in_progress'
                    WHEN status_draw < 0.86 THEN 'completed'
                    WHEN status_draw < 0.94 THEN 'failed'
                    ELSE 'cancelled' END,
                completed_at = CASE
                    WHEN created_at > %(now)s - %(open_window)s * interval '1 second'
                        THEN NULL
                    ELSE created_at + (30 + 270 * duration_draw) * interval '1 second'
                    END
            """,
            self.params,
        )
        return staged

    def insert_calls(self, cursor) -> int:
        """Insert the calls and add up each staged job's totals in one pass."""
        r = self.random
        models = ", ".join(
            f"({position}, '{alias}', '{provider}', '{model}', {inp}, {out})"
            for position, (alias, provider, model, inp, out) in enumerate(
                MODELS, start=1
            )
        )
        columns = (
            "id, job_id, team_id, organization_id, alias, provider, "
            "provider_model, purpose, prompt_tokens, completion_tokens, "
            "total_tokens, input_price_per_million, output_price_per_million, "
            "provider_cost_usd, client_cost_usd, latency_ms, attempt_count, "
            "finish_reason, error_code, error_message, error_detail, created_at"
        )
        more_columns, more_values, params = default_columns(
            LLMCall, columns, derived={"served_by": "alias"}
        )
        cursor.execute(
            f"""
            WITH drawn AS (
                SELECT g,
                       j.id AS job_id,
                       j.team_id,
                       j.organization_id,
                       j.markup_percent,
                       j.created_at
                           + {r("g", 11)}
                             * (coalesce(j.completed_at, %(now)s) - j.created_at)
                           AS created_at,
                       CASE WHEN {r("g", 12)} < 0.6 THEN 1
                            WHEN {r("g", 12)} < 0.9 THEN 2 ELSE 3 END AS model,
                       {r("g", 13)} < 0.03 AS is_failed,
                       50 + floor(1500 * power({r("g", 14)}, 2))::int AS prompt,
                       10 + floor(600 * {r("g", 15)})::int AS completion,
                       150 + floor(2500 * power({r("g", 16)}, 3))::int AS latency_ms
                FROM generate_series(1, %(calls)s) AS g
                JOIN bench_job AS j
                  ON j.seq = 1 + floor(%(jobs)s * {r("g", 10)})::int
            ),
            priced AS (
                SELECT d.*, m.alias, m.provider, m.provider_model,
                       m.input_price, m.output_price,
                       CASE WHEN d.is_failed THEN 0 ELSE d.prompt END AS prompt_tokens,
                       CASE WHEN d.is_failed THEN 0 ELSE d.completion END
                           AS completion_tokens
                FROM drawn AS d
                JOIN (VALUES {models})
                    AS m(position, alias, provider, provider_model,
                         input_price, output_price)
                  ON m.position = d.model
            ),
            costed AS (
                SELECT p.*,
                       round((p.prompt_tokens * p.input_price
                              + p.completion_tokens * p.output_price) / 1000000, 10)
                           AS provider_cost_usd
                FROM priced AS p
            ),
            inserted AS (
                INSERT INTO {LLMCall._meta.db_table} ({columns}{more_columns})
                SELECT md5(%(seed_text)s || ':call:' || g)::uuid,
                       job_id, team_id, organization_id, alias, provider,
                       provider_model,
                       {sql_text_array(PURPOSES)}[1 + floor({len(PURPOSES)}
                           * {r("g", 17)})::int],
                       prompt_tokens, completion_tokens,
                       prompt_tokens + completion_tokens,
                       input_price, output_price, provider_cost_usd,
                       round(provider_cost_usd * (1 + markup_percent / 100), 10),
                       latency_ms,
                       CASE WHEN is_failed THEN 2 ELSE 1 END,
                       CASE WHEN is_failed THEN ''
                            WHEN {r("g", 18)} < 0.05 THEN 'length'
                            ELSE 'stop' END,
                       CASE WHEN NOT is_failed THEN ''
                            WHEN {r("g", 18)} < 0.5 THEN 'provider_error'
                            ELSE 'provider_timeout' END,
                       CASE WHEN NOT is_failed THEN ''
                            WHEN {r("g", 18)} < 0.5
                                THEN 'The provider returned an error.'
                            ELSE 'The provider did not respond in time.' END,
                       '',
                       created_at {more_values}
                FROM costed
                RETURNING job_id, error_code, total_tokens, client_cost_usd
            ),
            totals AS (
                SELECT job_id,
                       count(*) AS call_count,
                       count(*) FILTER (WHERE error_code = '') AS successful_calls,
                       coalesce(sum(total_tokens) FILTER (WHERE error_code = ''), 0)
                           AS total_tokens,
                       sum(client_cost_usd) AS total_cost_usd
                FROM inserted
                GROUP BY job_id
            )
            UPDATE bench_job AS j SET
                call_count = t.call_count,
                successful_calls = t.successful_calls,
                total_tokens = t.total_tokens,
                total_cost_usd = t.total_cost_usd
            FROM totals AS t
            WHERE j.id = t.job_id
            """,
            {**self.params, **params},
        )
        return self.size.calls

    def settle_jobs(self, cursor) -> int:
        """Compute each job's charge and hold as complete_job and create_job do.

        A completed job with a successful call costs 1 credit per job, or
        max(1, floor(cost x credits per dollar)), or max(1, floor(tokens /
        tokens per credit)); other closed jobs cost nothing. An open job
        holds at least 1 credit, and in the consumption modes its accrued
        credits rounded up.
        """
        cursor.execute(
            """
            UPDATE bench_job SET accrued_credits = CASE budget_mode
                WHEN 'consumption_usd' THEN total_cost_usd * credits_per_dollar
                WHEN 'consumption_tokens'
                    THEN total_tokens::numeric / tokens_per_credit
                ELSE 0 END
            """
        )
        cursor.execute(
            """
            UPDATE bench_job SET
                credits_charged = CASE
                    WHEN status <> 'completed' OR successful_calls = 0 THEN 0
                    WHEN budget_mode = 'job_based' THEN 1
                    ELSE greatest(1, floor(accrued_credits)) END,
                credits_held = CASE
                    WHEN status <> 'in_progress' THEN 0
                    ELSE greatest(1, ceil(accrued_credits)) END
            """
        )
        return cursor.rowcount

    def insert_jobs(self, cursor) -> int:
        columns = (
            "id, team_id, organization_id, user_id, job_type, status, metadata, "
            "error_message, created_at, started_at, completed_at, credits_held, "
            "credit_applied, credits_charged, call_count, calls_in_flight, "
            "accrued_credits, credits_reserved"
        )
        more_columns, more_values, params = default_columns(Job, columns)
        cursor.execute(
            f"""
            INSERT INTO {Job._meta.db_table} ({columns}{more_columns})
            SELECT id, team_id, organization_id, user_id, job_type, status,
                   '{{}}'::jsonb,
                   CASE WHEN status = 'failed' THEN 'A later step of the job failed.'
                        ELSE '' END,
                   created_at,
                   CASE WHEN call_count > 0
                        THEN created_at + interval '200 milliseconds' END,
                   completed_at, credits_held, credits_charged > 0,
                   credits_charged, call_count, 0,
                   round(accrued_credits, 10), 0 {more_values}
            FROM bench_job
            """,
            params,
        )
        return cursor.rowcount

    def insert_ledger(self, cursor) -> int:
        """Write allocations, payments, deductions and refunds with running balances.

        Each team's first row allocates what its jobs are charged and hold
        plus a margin, so no balance ever falls below zero. A third of the
        teams also make one payment halfway through the period.
        """
        r = self.random
        columns = (
            "id, team_id, job_id, type, amount, balance_before, balance_after, "
            "reason, actor, payment_amount_usd, refill_period_key, created_at"
        )
        more_columns, more_values, params = default_columns(CreditTransaction, columns)
        cursor.execute(
            f"""
            WITH per_team AS (
                SELECT t.seq, t.id AS team_id,
                       coalesce(sum(j.credits_charged), 0)
                           + coalesce(sum(j.credits_held), 0) AS needed
                FROM bench_team AS t
                LEFT JOIN bench_job AS j ON j.team_id = t.id
                GROUP BY t.seq, t.id
            ),
            entries AS (
                SELECT md5(%(seed_text)s || ':allocation:' || seq)::uuid AS id,
                       team_id, NULL::uuid AS job_id, 'allocation' AS type,
                       needed + 100 + floor(5000 * {r("seq", 30)})::bigint AS amount,
                       'Initial allocation' AS reason, 'seed_bench' AS actor,
                       NULL::numeric AS payment_amount_usd,
                       %(now)s - (%(span_seconds)s + 86400) * interval '1 second'
                           AS created_at
                FROM per_team
                UNION ALL
                SELECT md5(%(seed_text)s || ':payment:' || seq)::uuid,
                       team_id, NULL, 'one_time_payment', 500,
                       'One-time payment of 50.00 USD', 'seed_bench', 50.00,
                       %(now)s - %(span_seconds)s / 2 * interval '1 second'
                FROM per_team
                WHERE {r("seq", 31)} < 0.33
                UNION ALL
                SELECT md5(%(seed_text)s || ':deduction:' || seq)::uuid,
                       team_id, id, 'deduction', -credits_charged,
                       'Job ' || id || ' (' || job_type || ') completed, '
                           || budget_mode,
                       '', NULL, completed_at
                FROM bench_job
                WHERE credits_charged > 0
                UNION ALL
                SELECT md5(%(seed_text)s || ':refund:' || seq)::uuid,
                       team_id, id, 'refund', credits_charged,
                       'Refund of job ' || id || ' (' || job_type || ')',
                       'seed_bench', NULL,
                       least(completed_at + interval '2 hours', %(now)s)
                FROM bench_job
                WHERE credits_charged > 0 AND is_refunded
            ),
            balanced AS (
                SELECT e.*,
                       sum(amount) OVER (
                           PARTITION BY team_id ORDER BY created_at, id
                           ROWS UNBOUNDED PRECEDING
                       ) AS balance_after
                FROM entries AS e
            )
            INSERT INTO {CreditTransaction._meta.db_table} ({columns}{more_columns})
            SELECT id, team_id, job_id, type, amount, balance_after - amount,
                   balance_after, left(reason, 500), actor, payment_amount_usd, '',
                   created_at {more_values}
            FROM balanced
            """,
            {**self.params, **params},
        )
        return cursor.rowcount

    def update_balances(self, cursor) -> int:
        """Set each team's balances from its ledger rows and its open jobs' holds."""
        cursor.execute(
            f"""
            UPDATE {Team._meta.db_table} AS team SET
                credits_allocated = ledger.allocated,
                credits_used = ledger.used,
                credits_held = holds.held
            FROM (
                SELECT team_id,
                       coalesce(sum(amount) FILTER (
                           WHERE type NOT IN ('deduction', 'refund')), 0)
                           AS allocated,
                       coalesce(-sum(amount) FILTER (
                           WHERE type IN ('deduction', 'refund')), 0) AS used
                FROM {CreditTransaction._meta.db_table}
                WHERE team_id IN (SELECT id FROM bench_team)
                GROUP BY team_id
            ) AS ledger,
            (
                SELECT t.id AS team_id, coalesce(sum(j.credits_held), 0) AS held
                FROM bench_team AS t
                LEFT JOIN bench_job AS j ON j.team_id = t.id
                GROUP BY t.id
            ) AS holds
            WHERE team.id = ledger.team_id AND team.id = holds.team_id
            """
        )
        return cursor.rowcount

    def check_constraints(self, cursor) -> int:
        # Django creates foreign keys DEFERRABLE INITIALLY DEFERRED; checking
        # them here makes a broken reference fail inside this command, also
        # when a test's transaction is never committed.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        return 0
