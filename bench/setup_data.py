"""Create the benchmark's tenant, aliases and keys through the services.

Run with the gateway's environment: ``python -m bench.setup_data < config.json``.
The JSON on stdin names the fake provider's URL and the hot team's credits.
The JSON on stdout contains the new keys and the staff password. The runner
keeps them in memory and writes none of them to a result file.
"""

import json
import os
import secrets
import sys

import django

ORGANIZATION_ID = "bench-run"
MAIN_TEAM = "bench-run-main"
HOT_TEAM = "bench-run-hot"
ACCESS_GROUP = "bench"
KEY_NAME = "bench"
STAFF_USERNAME = "bench-admin"
ACTOR = "bench"
MAIN_TEAM_CREDITS = 1_000_000_000
PROVIDER_API_KEY = "sk-bench-provider"
# Alias -> the fake provider's model name, which selects its behaviour:
# slow-<seconds> waits, stream-<count>x<ms> streams count words ms apart.
ALIASES = {
    "bench-0": "bench",
    "bench-50": "slow-0.05",
    "bench-held": "slow-10",
    "bench-stream": "stream-50x20",
}


def ensure_catalog(organization, provider_url: str):
    from catalog.crypto import encrypt_secret
    from catalog.models import AccessGroup, ModelAlias, ProviderCredential

    group, _ = AccessGroup.objects.get_or_create(
        name=ACCESS_GROUP, defaults={"display_name": "Benchmark"}
    )
    for alias, provider_model in ALIASES.items():
        model, _ = ModelAlias.objects.update_or_create(
            alias=alias,
            defaults={
                "provider": "openai_compatible",
                "provider_model": provider_model,
                "input_price_per_million": "0.150000",
                "output_price_per_million": "0.600000",
            },
        )
        group.aliases.add(model)
    # Encrypted again on every run: the run's ENCRYPTION_KEY is new.
    ProviderCredential.objects.update_or_create(
        organization=organization,
        provider="openai_compatible",
        is_active=True,
        defaults={
            "name": "bench fake provider",
            "encrypted_api_key": encrypt_secret(PROVIDER_API_KEY),
            "api_base": provider_url,
        },
    )
    return group


def ensure_team(organization, group, team_id: str, credits: int):
    """Create the team, or set its available credits to ``credits`` by adjustment."""
    from teams.models import Team
    from teams.services import adjust_credits, create_team

    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        team, _, _ = create_team(
            organization=organization,
            team_id=team_id,
            access_groups=[group],
            credits=credits,
            actor=ACTOR,
        )
        return team
    team.access_groups.add(group)
    change = credits - team.credits_available
    if change:
        adjust_credits(
            team_id=team_id,
            credits=change,
            reason="Benchmark run: reset available credits",
            allow_negative=True,
            actor=ACTOR,
        )
    return team


def new_key(team) -> str:
    """Revoke the team's earlier benchmark keys and issue a new one."""
    from teams.models import VirtualKey
    from teams.services import issue_key, revoke_keys

    revoke_keys(keys=VirtualKey.objects.filter(team=team), actor=ACTOR)
    _, plaintext = issue_key(team=team, name=KEY_NAME, actor=ACTOR)
    return plaintext


def reset_staff_password() -> str:
    from django.contrib.auth import get_user_model

    password = secrets.token_urlsafe(18)
    user, _ = get_user_model().objects.get_or_create(
        username=STAFF_USERNAME, defaults={"is_staff": True, "is_superuser": True}
    )
    user.set_password(password)
    user.save(update_fields=["password"])
    return password


def seeded_team():
    """Return the seeded team with the most jobs, or None before seed_bench ran."""
    from django.db.models import Count

    from jobs.management.commands.seed_bench import ID_PREFIX
    from teams.models import Team

    return (
        Team.objects.filter(pk__startswith=ID_PREFIX)
        .annotate(job_count=Count("jobs"))
        .order_by("-job_count")
        .first()
    )


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saasllm.settings")
    django.setup()
    from teams.models import Organization
    from teams.services import create_organization

    config = json.load(sys.stdin)
    organization = Organization.objects.filter(pk=ORGANIZATION_ID).first()
    if organization is None:
        organization = create_organization(
            organization_id=ORGANIZATION_ID, name="Benchmark runs", actor=ACTOR
        )
    group = ensure_catalog(organization, config["provider_url"])
    main_team = ensure_team(organization, group, MAIN_TEAM, MAIN_TEAM_CREDITS)
    hot_team = ensure_team(organization, group, HOT_TEAM, config["hot_team_credits"])
    output = {
        "organization": ORGANIZATION_ID,
        "main_team": main_team.id,
        "main_key": new_key(main_team),
        "hot_team": hot_team.id,
        "hot_key": new_key(hot_team),
        "staff_username": STAFF_USERNAME,
        "staff_password": reset_staff_password(),
        "seeded_team": None,
    }
    seeded = seeded_team()
    if seeded is not None:
        output.update(
            seeded_team=seeded.id,
            seeded_organization=seeded.organization_id,
            seeded_key=new_key(seeded),
        )
    json.dump(output, sys.stdout)


if __name__ == "__main__":
    main()
