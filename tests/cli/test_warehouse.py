"""`tokenwatt warehouse stats|verify|clear` on a disk directory and on a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tokenwatt.cli.main import app
from tokenwatt.warehouse.codec import encode_block
from tokenwatt.warehouse.disk import DiskTier
from tokenwatt.warehouse.keys import fingerprint_digest
from tokenwatt.warehouse.redis_tier import RedisTier

# The real redis-server fixtures live with the warehouse tests; reuse them here.
from ..warehouse.conftest import redis_cluster, redis_server, redis_url  # noqa: F401

A, B, C = "aa" * 16, "bb" * 16, "cc" * 16
FP = fingerprint_digest("m")


def _text(output: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(output.split())


def _block(key: str) -> bytes:
    return encode_block(key, FP, 4, [np.arange(8, dtype=np.float32).reshape(1, 4, 2)])


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    """A disk tier with blocks A and B (good) and C (payload byte flipped)."""
    tier = DiskTier(tmp_path, 1 << 20)
    for key in (A, B, C):
        tier.put(key, _block(key))
    path = tier.path_of(C)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    tier.close()
    return tmp_path


def test_stats_json(disk_dir: Path) -> None:
    """stats --json counts blocks, bytes, block sizes and fingerprints."""
    result = CliRunner().invoke(app, ["warehouse", "stats", "--disk", str(disk_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["blocks"] == 3
    assert data["used_bytes"] == 3 * len(_block(A))
    assert data["blocks_by_token_count"] == {"4": 3}
    assert data["blocks_by_fingerprint"] == {FP.hex(): 3}


def test_stats_table(disk_dir: Path) -> None:
    """stats prints a table with the block count."""
    result = CliRunner().invoke(app, ["warehouse", "stats", "--disk", str(disk_dir)])
    assert result.exit_code == 0
    assert "blocks of 4 tokens" in result.output


def test_verify_reports_without_removing(disk_dir: Path) -> None:
    """verify names the bad block, exits 1, and leaves it in place."""
    result = CliRunner().invoke(app, ["warehouse", "verify", "--disk", str(disk_dir)])
    assert result.exit_code == 1
    assert f"bad {C}: payload checksum mismatch" in result.output
    assert "checked 3 blocks: 2 ok, 1 bad, 0 removed" in result.output
    assert DiskTier(disk_dir, 1 << 20, repair=False).contains(C)


def test_verify_reports_truncated_file_without_removing(disk_dir: Path) -> None:
    """A truncated file is reported (not silently deleted) when --remove is not given."""
    path = DiskTier(disk_dir, 1).path_of(A)
    path.write_bytes(path.read_bytes()[:-2])
    result = CliRunner().invoke(app, ["warehouse", "verify", "--disk", str(disk_dir)])
    assert result.exit_code == 1
    assert "2 bad" in result.output
    assert path.exists()


def test_verify_remove(disk_dir: Path) -> None:
    """verify --remove deletes the bad block and exits 0; a second verify is clean."""
    runner = CliRunner()
    result = runner.invoke(app, ["warehouse", "verify", "--disk", str(disk_dir), "--remove"])
    assert result.exit_code == 0
    assert "1 bad, 1 removed" in result.output
    again = runner.invoke(app, ["warehouse", "verify", "--disk", str(disk_dir)])
    assert "checked 2 blocks: 2 ok, 0 bad" in again.output


def test_clear_needs_yes(disk_dir: Path) -> None:
    """clear without --yes refuses with exit 2 and deletes nothing."""
    result = CliRunner().invoke(app, ["warehouse", "clear", "--disk", str(disk_dir)])
    assert result.exit_code == 2
    assert DiskTier(disk_dir, 1 << 20).usage().blocks == 3


def test_clear_yes(disk_dir: Path) -> None:
    """clear --yes removes every block."""
    result = CliRunner().invoke(app, ["warehouse", "clear", "--disk", str(disk_dir), "--yes"])
    assert result.exit_code == 0
    assert "removed 3 blocks" in result.output
    assert DiskTier(disk_dir, 1 << 20).usage().blocks == 0


def test_needs_exactly_one_target(tmp_path: Path) -> None:
    """Neither or both of --disk/--redis is a clear error with exit 2."""
    result = CliRunner().invoke(app, ["warehouse", "stats"])
    assert result.exit_code == 2
    assert "exactly one of --disk DIR or --redis URL" in _text(result.output)


def test_missing_directory(tmp_path: Path) -> None:
    """A --disk path that does not exist is an error, not an empty warehouse created there."""
    result = CliRunner().invoke(app, ["warehouse", "stats", "--disk", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "is not a directory" in _text(result.output)
    assert not (tmp_path / "nope").exists()


def test_dead_redis_is_a_clear_error() -> None:
    """A Redis URL nobody answers gives a message, not a traceback."""
    result = CliRunner().invoke(
        app, ["warehouse", "stats", "--redis", "redis://127.0.0.1:1/0", "--timeout", "0.2"]
    )
    assert result.exit_code == 2
    assert "is the server running?" in _text(result.output)


def test_redis_verify_and_clear(redis_url: str) -> None:  # noqa: F811
    """verify and clear work on Redis blocks under the default key prefix."""
    tier = RedisTier(redis_url)
    tier.put(A, _block(A))
    tier.put(B, _block(A))  # intact block under the wrong key
    runner = CliRunner()
    result = runner.invoke(app, ["warehouse", "verify", "--redis", redis_url])
    assert result.exit_code == 1
    assert "checked 2 blocks: 1 ok, 1 bad" in result.output
    result = runner.invoke(app, ["warehouse", "clear", "--redis", redis_url, "--yes"])
    assert "removed 2 blocks" in result.output
    assert list(tier.iter_keys()) == []
    tier.close()


@pytest.mark.slow
def test_redis_cluster_stats(redis_cluster: str) -> None:  # noqa: F811
    """stats --cluster counts blocks spread over the 3-node cluster."""
    tier = RedisTier(redis_cluster, cluster=True)
    keys = [f"{i:032x}" for i in range(12)]
    tier.put_many([(k, _block(k), 0.0) for k in keys])
    result = CliRunner().invoke(
        app, ["warehouse", "stats", "--redis", redis_cluster, "--cluster", "--json"]
    )
    tier.clear()
    tier.close()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["blocks"] == 12


def test_stats_on_a_plain_directory_creates_nothing(tmp_path: Path) -> None:
    """Inspecting a directory that holds no warehouse reports 0 blocks and leaves it untouched."""
    result = CliRunner().invoke(app, ["warehouse", "stats", "--disk", str(tmp_path), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["blocks"] == 0
    assert list(tmp_path.iterdir()) == []


def test_target_can_be_given_without_an_option(disk_dir: Path) -> None:
    """`warehouse stats DIR` reads the disk tier at DIR, as `--disk DIR` does."""
    result = CliRunner().invoke(app, ["warehouse", "stats", str(disk_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["blocks"] == 3


def test_redis_url_can_be_given_without_an_option() -> None:
    """`warehouse stats redis://...` reads Redis (here: a dead one, so a clear error)."""
    result = CliRunner().invoke(
        app, ["warehouse", "verify", "redis://127.0.0.1:1/0", "--timeout", "0.2"]
    )
    assert result.exit_code == 2
    assert "cannot read redis://127.0.0.1:1/0" in _text(result.output)


def test_target_and_option_together_is_a_clear_error(disk_dir: Path) -> None:
    """A positional target plus --disk or --redis is ambiguous and refused."""
    result = CliRunner().invoke(
        app, ["warehouse", "clear", str(disk_dir), "--redis", "redis://x", "--yes"]
    )
    assert result.exit_code == 2
    assert "give the tier once" in _text(result.output)
    assert DiskTier(disk_dir, 1 << 20).usage().blocks == 3


def test_stats_counts_bad_files_and_points_to_verify(disk_dir: Path) -> None:
    """Files the index cannot use (here a truncated block) show up in stats, not only in a
    log line, with the command that lists them."""
    path = DiskTier(disk_dir, 1 << 20).path_of(A)
    path.write_bytes(path.read_bytes()[:10])
    result = CliRunner().invoke(app, ["warehouse", "stats", str(disk_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert (data["blocks"], data["bad_files"]) == (2, 1)
    table = CliRunner().invoke(app, ["warehouse", "stats", str(disk_dir)])
    assert "bad files (see warehouse verify) │ 1" in _text(table.output)


@pytest.mark.parametrize("timeout", ["nan", "inf", "1e300", "0"])
def test_absurd_redis_timeout_is_a_clear_error(timeout: str) -> None:
    """A NaN, infinite, huge or zero --timeout is refused with a message, not a traceback."""
    result = CliRunner().invoke(
        app, ["warehouse", "stats", "redis://127.0.0.1:1/0", "--timeout", timeout]
    )
    assert result.exit_code == 2
    assert "socket_timeout_s must be" in _text(result.output)


def test_usage_line_shows_the_optional_target_once_bracketed() -> None:
    """The usage line reads `[DIR|URL]`, not `[[DIR|URL]]`."""
    result = CliRunner().invoke(app, ["warehouse", "stats", "--help"])
    assert "stats [OPTIONS] [DIR|URL]" in _text(result.output)
    assert "[[DIR|URL]]" not in result.output
