"""The vectorised Azure block parser: what it accepts, and what it hands to the row parser."""

from __future__ import annotations

import pytest

from tokenwatt.workload._trace_chunks import _azure_block

BASE_S = 1700158546.0  # 2023-11-16 18:15:46 UTC


def test_clean_block_parses_to_columns() -> None:
    """Plain rows give epoch seconds and integer counts."""
    chunk = _azure_block("2023-11-16 18:15:46.5000000,374,44\n2023-11-16T18:15:47.2500000,7,0\n")
    assert chunk is not None
    t, inp, out = chunk
    assert t.tolist() == pytest.approx([BASE_S + 0.5, BASE_S + 1.25], abs=1e-6)
    assert (inp.tolist(), out.tolist()) == ([374, 7], [44, 0])


def test_utc_suffix_and_missing_final_newline() -> None:
    """+00:00 timestamps parse; a last line without a newline counts."""
    chunk = _azure_block(
        "2023-11-16 18:15:46.000000+00:00,1,2\n2023-11-16 18:15:48.000000+00:00,3,4"
    )
    assert chunk is not None
    assert chunk[0].tolist() == pytest.approx([BASE_S, BASE_S + 2.0], abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "2023-11-16 18:15:46.5Z,1,2\n",  # zone other than +00:00
        "2023-11-16 20:15:46.5+02:00,1,2\n",  # non-UTC offset
        "2023-11-16 18:15:46.5,1.5,2\n",  # not an integer
        "2023-11-16 18:15:46.5,+1,2\n",  # sign (int() takes it; the row parser decides)
        "2023-11-16 18:15:46.5,1\n",  # missing field
        "2023-11-16 18:15:46.5,1,2\n\n",  # blank line
        "2023-11-16 18:15:46.5,1,2\n2023-11-16 18:15:46.55,1,2\n",  # widths differ
        "2023-13-16 18:15:46.5,1,2\n",  # month 13
        "not a timestamp at all!,1,2\n",
        "2023-11-16 18:15:46.5,1,2é\n",  # non-ASCII
    ],
)
def test_anything_unusual_falls_back(text: str) -> None:
    """Blocks the fast path cannot vouch for return None (the row parser takes over)."""
    assert _azure_block(text) is None


def test_counts_up_to_15_digits_are_exact() -> None:
    """A 15-digit count parses exactly; 16 digits go to the row parser."""
    chunk = _azure_block("2023-11-16 18:15:46.5,123456789012345,7\n")
    assert chunk is not None
    assert chunk[1].tolist() == [123456789012345]
    assert _azure_block("2023-11-16 18:15:46.5,1234567890123456,7\n") is None


def test_block_parser_agrees_with_the_row_parser_on_a_real_sample() -> None:
    """On 40 real Azure rows both parsers give the same times (to 1 us) and counts."""
    from pathlib import Path

    from tokenwatt.workload._trace_chunks import _rowwise

    path = (
        Path(__file__).resolve().parents[1] / "fixtures" / "traces" / "azure_2023_conv_head40.csv"
    )
    header, *lines = path.read_text().splitlines(keepends=True)
    fast = _azure_block("".join(lines))
    slow = _rowwise("azure", header, lines, lambda reason: None)
    assert fast is not None
    assert fast[0].tolist() == pytest.approx(slow[0].tolist(), abs=1e-6)
    assert (fast[1].tolist(), fast[2].tolist()) == (slow[1].tolist(), slow[2].tolist())
