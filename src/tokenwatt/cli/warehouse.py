"""`tokenwatt warehouse stats|verify|clear` for a disk directory or a Redis URL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.table import Table

from tokenwatt.errors import ConfigError
from tokenwatt.warehouse.disk import DiskTier
from tokenwatt.warehouse.maintenance import clear_tier, summarize_tier, verify_tier
from tokenwatt.warehouse.redis_tier import RedisTier
from tokenwatt.warehouse.tier import Tier

from ._common import console, fail, user_errors

T = TypeVar("T")

__all__ = ["register"]

# Inspection must never evict: a budget far above any disk.
_NO_BUDGET = 1 << 62

TargetArg = typer.Argument(
    None,
    metavar="DIR|URL",
    help="The tier: a disk tier directory or a redis:// URL (instead of --disk/--redis).",
    show_default=False,
)
DiskOpt = typer.Option(None, "--disk", help="Disk tier directory.", file_okay=False)
RedisOpt = typer.Option(None, "--redis", help="Redis URL, e.g. redis://127.0.0.1:6379/0.")
ClusterOpt = typer.Option(False, "--cluster", help="The Redis URL is a Redis Cluster node.")
PrefixOpt = typer.Option("tw:kv:", "--key-prefix", help="Key prefix of the blocks in Redis.")
TimeoutOpt = typer.Option(2.0, "--timeout", help="Redis socket timeout, seconds.")


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _resolve_target(
    target: str | None, disk: Path | None, redis: str | None
) -> tuple[Path | None, str | None]:
    """Fold a positional DIR or URL into (disk, redis)."""
    if target is None:
        return disk, redis
    if disk is not None or redis is not None:
        raise ConfigError(f"give the tier once: either {target!r} or --disk/--redis, not both")
    if target.startswith(_REDIS_SCHEMES):
        return None, target
    return Path(target), None


def _open_tier(
    disk: Path | None, redis: str | None, cluster: bool, key_prefix: str, timeout_s: float
) -> Tier:
    if (disk is None) == (redis is None):
        raise ConfigError("give exactly one of --disk DIR or --redis URL (or just DIR or URL)")
    if disk is not None:
        if not disk.is_dir():
            raise ConfigError(f"{disk} is not a directory (pass the disk tier's directory)")
        return DiskTier(disk, _NO_BUDGET, repair=False).open()
    assert redis is not None
    return RedisTier(redis, cluster=cluster, key_prefix=key_prefix, socket_timeout_s=timeout_s)


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


def _on_tier(
    target: str | None,
    disk: Path | None,
    redis: str | None,
    cluster: bool,
    key_prefix: str,
    timeout: float,
    action: Callable[[Tier], T],
) -> tuple[T, Tier, str]:
    """Open the tier named by the options, run ``action`` on it, close it; clear errors."""
    with user_errors():
        disk, redis = _resolve_target(target, disk, redis)
        tier = _open_tier(disk, redis, cluster, key_prefix, timeout)
        try:
            return action(tier), tier, str(disk or redis)
        except _redis_errors() as exc:
            raise fail(f"cannot read {redis}: {exc} (is the server running?)") from None
        finally:
            tier.close()


def stats(
    target: str | None = TargetArg,
    disk: Path | None = DiskOpt,
    redis: str | None = RedisOpt,
    cluster: bool = ClusterOpt,
    key_prefix: str = PrefixOpt,
    timeout: float = TimeoutOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Blocks, bytes, block sizes and model fingerprints held by a tier."""
    summary, tier, where = _on_tier(
        target, disk, redis, cluster, key_prefix, timeout, summarize_tier
    )
    bad_files = tier.rejected_at_open if isinstance(tier, DiskTier) else 0
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "blocks": summary.blocks,
                    "used_bytes": summary.used_bytes,
                    "blocks_by_token_count": {str(k): v for k, v in summary.token_counts.items()},
                    "blocks_by_fingerprint": summary.fingerprints,
                    "bad_files": bad_files,
                }
            )
        )
        return
    table = Table(title=f"warehouse tier {where}")
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_row("blocks", str(summary.blocks))
    table.add_row("used_bytes", f"{summary.used_bytes:,}")
    for tokens, count in sorted(summary.token_counts.items()):
        table.add_row(f"blocks of {tokens} tokens", str(count))
    for fp, count in sorted(summary.fingerprints.items()):
        table.add_row(f"model {fp[:12]}", str(count))
    if bad_files:
        table.add_row("bad files (see warehouse verify)", str(bad_files), style="red")
    console.print(table)


def verify(
    target: str | None = TargetArg,
    disk: Path | None = DiskOpt,
    redis: str | None = RedisOpt,
    cluster: bool = ClusterOpt,
    key_prefix: str = PrefixOpt,
    timeout: float = TimeoutOpt,
    remove: bool = typer.Option(False, "--remove", help="Delete the blocks that fail."),
) -> None:
    """Check every block's header, key and checksum; exit 1 if any is bad (unless removed)."""
    report, _, _ = _on_tier(
        target, disk, redis, cluster, key_prefix, timeout, lambda t: verify_tier(t, remove=remove)
    )
    for bad in report.bad:
        console.print(f"[red]bad[/] {bad.key}: {bad.reason}", highlight=False)
    console.print(
        f"checked {report.checked} blocks: {report.ok} ok, {len(report.bad)} bad, "
        f"{report.removed} removed",
        highlight=False,
    )
    if len(report.bad) > report.removed:
        raise typer.Exit(1)


def clear(
    target: str | None = TargetArg,
    disk: Path | None = DiskOpt,
    redis: str | None = RedisOpt,
    cluster: bool = ClusterOpt,
    key_prefix: str = PrefixOpt,
    timeout: float = TimeoutOpt,
    yes: bool = typer.Option(False, "--yes", help="Confirm: delete every block."),
) -> None:
    """Delete every block of a tier (needs --yes)."""
    if not yes:
        raise fail("clear deletes every block of the tier; add --yes to confirm")
    removed, _, _ = _on_tier(target, disk, redis, cluster, key_prefix, timeout, clear_tier)
    console.print(f"removed {removed} blocks", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``warehouse`` command group to ``app``."""
    group = typer.Typer(
        help="Inspect, verify or clear a token warehouse tier (disk or Redis).",
        no_args_is_help=True,
    )
    group.command("stats")(stats)
    group.command("verify")(verify)
    group.command("clear")(clear)
    app.add_typer(group, name="warehouse")
