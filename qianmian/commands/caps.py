"""Caps commands: `recsys caps check-policy`, `recsys caps show-default`, `recsys caps state`.

Other areas add commands to the same group through `caps_app` (e.g. `caps_app.command("simulate")`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer

caps_app = typer.Typer(
    name="caps",
    help="Anti-disturbance frequency caps: check, show and inspect cap policies and cardholder state.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(caps_app, name="caps")


@caps_app.command("check-policy")
def check_policy(
    path: Path = typer.Argument(..., help="Policy file (.yaml, .yml or .json)."),
    as_json: bool = typer.Option(False, "--json", help="Print the validated policy as JSON."),
) -> None:
    """Validate a cap policy file and print what it enforces; exit 1 naming every bad field."""
    from recsys.caps.policy import PolicyError, load_policy

    try:
        policy = load_policy(path)
    except PolicyError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from error
    typer.echo(json.dumps(policy.to_dict(), indent=2, ensure_ascii=False) if as_json else policy.summary())


@caps_app.command("show-default")
def show_default(
    as_json: bool = typer.Option(False, "--json", help="Print as JSON instead of the commented YAML file."),
) -> None:
    """Print the default policy shipped with the package (a starting point for your own)."""
    from recsys.caps.policy import default_policy, default_policy_text

    if as_json:
        typer.echo(json.dumps(default_policy().to_dict(), indent=2, ensure_ascii=False))
    else:
        typer.echo(default_policy_text(), nl=False)


@caps_app.command("state")
def state(
    user_id: str = typer.Argument(..., help="Cardholder id."),
    timezone: str | None = typer.Option(None, "--tz", help="Cardholder's IANA zone (default: the policy's)."),
    policy_path: Path | None = typer.Option(
        None, "--policy", help="Policy file (default: RECSYS_POLICY_PATH, else the shipped default)."
    ),
    redis_url: str | None = typer.Option(None, "--redis-url", help="Redis URL (default: RECSYS_REDIS_URL)."),
    prefix: str | None = typer.Option(
        None,
        "--prefix",
        help="Cap key prefix (default: RECSYS_REDIS_PREFIX + ':caps', as the ranking API uses).",
    ),
    cluster: bool = typer.Option(False, "--cluster", help="The URL names a Redis Cluster node."),
    now: str | None = typer.Option(
        None, "--now", help="Evaluate at this time (ISO 8601, UTC if no zone). Default: the current time."
    ),
) -> None:
    """Show a cardholder's cap counts, pending reservations and next eligible time from Redis."""
    from recsys.caps.decisions import CapRequestError, CapStoreUnavailable
    from recsys.caps.policy import PolicyError, default_policy, load_policy
    from recsys.caps.redis_engine import RedisCapEngine
    from recsys.config import get_settings

    settings = get_settings()
    key_prefix = prefix or f"{settings.redis_prefix}:caps"
    at = _parse_now(now) if now is not None else None
    try:
        chosen = policy_path or settings.policy_path
        policy = load_policy(chosen) if chosen else default_policy()
        engine = RedisCapEngine.from_url(redis_url or settings.redis_url, policy, prefix=key_prefix,
                                         cluster=cluster)
        try:
            current = engine.state(user_id, timezone=timezone, now=at)
            bytes_used = engine.memory_usage(user_id)
            key = engine.user_key(user_id)
        finally:
            engine.close()
    except (PolicyError, CapRequestError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from error
    except CapStoreUnavailable as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=3) from error
    typer.echo(
        f"cardholder {current.user_id} ({current.timezone}) as of {current.as_of:%Y-%m-%d %H:%M:%S} UTC"
    )
    source = "--prefix" if prefix else f"RECSYS_REDIS_PREFIX={settings.redis_prefix!r}"
    typer.echo(f"  key: {key} ({source}); policy: {policy.version} ({chosen or 'shipped default'})")
    if not bytes_used:
        typer.echo(
            f"  no caps record: nothing was ever reserved for {current.user_id} under {key_prefix!r}. "
            "Check the id, and that the prefix is the ranking API's (RECSYS_REDIS_PREFIX or --prefix). "
            "Below: what an empty record allows."
        )
    for limit in current.limits:
        typer.echo(f"  {limit.name}: {limit.count}/{limit.max} ({limit.window})")
    typer.echo(f"  pending reservations: {len(current.pending)}; sent in history: {current.sent_total}")
    typer.echo(f"  unopened streak: {current.unopened_streak}")
    typer.echo(f"  opted out: {current.opted_out}; muted: {current.muted}")
    eligible = (
        "never (as things stand)" if current.next_eligible_at is None else f"{current.next_eligible_at} UTC"
    )
    typer.echo(f"  next eligible: {eligible}")
    for block in current.blocks:
        typer.echo(f"    blocked by {block.rule}: {block.detail}")
    typer.echo(f"  stored bytes: {bytes_used}")


def _parse_now(text: str) -> datetime:
    """`--now` as an aware UTC datetime; a clear error naming the option otherwise."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time, e.g. 2026-10-31T10:00:00+08:00",
                                 param_hint="--now") from error
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
