"""Trace readers: formats, detection, bad rows, windows, scaling, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tokenwatt.errors import ConfigError, TraceError
from tokenwatt.workload.traces import TraceOptions, TraceReader, detect_format, open_trace

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "traces"
AZURE = FIXTURES / "azure_2023_conv_head40.csv"
MOONCAKE = FIXTURES / "mooncake_synthetic_head60.jsonl"
BURST = FIXTURES / "burstgpt_sample.csv"
BAD = FIXTURES / "azure_bad_rows.csv"


@pytest.mark.parametrize(
    ("path", "fmt"), [(AZURE, "azure"), (MOONCAKE, "mooncake"), (BURST, "burstgpt")]
)
def test_detect_format_from_first_line(path: Path, fmt: str) -> None:
    """Each sample's header or first JSON line names its format."""
    assert detect_format(path) == fmt


def test_detect_unknown_format_names_the_choices(tmp_path: Path) -> None:
    """A file with an unknown header raises TraceError listing the known formats."""
    p = tmp_path / "x.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(TraceError, match="azure, burstgpt, mooncake"):
        detect_format(p)


def test_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    """A path that does not exist raises TraceError naming it."""
    with pytest.raises(TraceError, match=r"nope\.csv not found"):
        open_trace(tmp_path / "nope.csv")


def test_unknown_explicit_format_is_a_trace_error() -> None:
    """An explicit format that is not known raises TraceError."""
    with pytest.raises(TraceError, match="unknown trace format 'parquet'"):
        open_trace(AZURE, format="parquet")  # type: ignore[arg-type]


def test_wrong_explicit_format_reads_no_rows() -> None:
    """Forcing the Mooncake format on an Azure CSV skips every row and then raises."""
    reader = open_trace(AZURE, format="mooncake")
    with pytest.raises(TraceError, match="no valid request rows"):
        list(reader)
    assert reader.stats.skipped == {"malformed": 41}


def test_azure_rows_become_requests_from_first_timestamp() -> None:
    """Azure rows give input/output tokens and arrivals in seconds from the first row."""
    reqs = list(open_trace(AZURE))
    assert len(reqs) == 40
    assert (reqs[0].request_id, reqs[0].arrival_s) == ("azure-0", 0.0)
    assert (reqs[0].input_tokens, reqs[0].output_tokens) == (374, 44)
    assert reqs[1].arrival_s == pytest.approx(4.314579, abs=1e-6)
    assert (reqs[1].input_tokens, reqs[1].output_tokens) == (396, 109)


def test_azure_2024_timestamps_with_utc_offset(tmp_path: Path) -> None:
    """2024-style timestamps with a +00:00 suffix and a non-UTC offset parse to the same clock."""
    p = tmp_path / "a24.csv"
    p.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.009930+00:00,10,2\n"
        "2024-05-10 02:00:01.009930+02:00,11,3\n"
        "2024-05-10 00:00:03.5Z,12,4\n"
    )
    arrivals = [r.arrival_s for r in open_trace(p)]
    assert arrivals == pytest.approx([0.0, 1.0, 3.49007], abs=1e-6)


def test_bad_rows_are_skipped_and_counted_by_reason() -> None:
    """Malformed, blank, zero-input and zero-output rows are skipped and counted; the rest read."""
    reader = open_trace(BAD)
    reqs = list(reader)
    assert [(r.arrival_s, r.input_tokens) for r in reqs] == [(0.0, 100), (2.5, 400)]
    assert reader.stats.skipped == {
        "malformed": 3,
        "zero_input": 1,
        "blank": 1,
        "zero_output": 1,
    }
    assert (reader.stats.rows, reader.stats.requests, reader.stats.skipped_total) == (8, 2, 6)


def test_burstgpt_skips_failures_and_numbers_session_turns() -> None:
    """BurstGPT rows with zero response tokens are failures; session ids and turns are kept."""
    reader = open_trace(BURST)
    reqs = list(reader)
    got = [(r.arrival_s, r.session_id, r.turn, r.input_tokens, r.output_tokens) for r in reqs]
    assert got == [
        (0.0, "s1", 0, 472, 18),
        (2.5, "s2", 0, 120, 240),
        (4.0, "s1", 1, 610, 35),
        (7.0, "s1", 2, 700, 64),
    ]
    assert reader.stats.skipped == {"failed": 1, "malformed": 1}


def test_mooncake_hash_ids_become_prefix_blocks() -> None:
    """Mooncake hash ids are the prefix block ids (512 tokens); timestamps are ms."""
    reqs = list(open_trace(MOONCAKE))
    assert len(reqs) == 60
    third = reqs[2]
    assert (third.arrival_s, third.input_tokens, third.output_tokens) == (0.04, 23769, 3)
    assert third.prefix_block_ids == tuple(range(151, 198))
    assert third.block_tokens == 512
    assert reqs[58].prefix_block_ids[:5] == reqs[15].prefix_block_ids[:5] == tuple(range(708, 713))
    assert reqs[58].prefix_block_ids[5] != reqs[15].prefix_block_ids[5]


def test_limit_stops_after_n_requests() -> None:
    """limit=3 yields exactly the first three requests."""
    reqs = list(open_trace(AZURE, options=TraceOptions(limit=3)))
    assert [r.request_id for r in reqs] == ["azure-0", "azure-1", "azure-2"]


def test_window_and_speedup_rebase_and_compress_arrivals() -> None:
    """A [2 s, 6 s) window keeps those rows, arrivals from 2 s, divided by the speed-up."""
    opts = TraceOptions(start_s=2.0, end_s=6.0, speedup=2.0)
    reader = open_trace(BURST, options=opts)
    assert [r.arrival_s for r in reader] == [0.25, 1.0]
    assert reader.stats.skipped == {"outside_window": 2, "failed": 1, "malformed": 1}


def test_unsorted_window_keeps_reading_past_end(tmp_path: Path) -> None:
    """With sorted_input=False a row past the window end does not stop the read."""
    p = tmp_path / "m.jsonl"
    lines = [(0, 5), (9000, 6), (1000, 7)]
    p.write_text(
        "".join(
            f'{{"timestamp": {t}, "input_length": {i}, "output_length": 1, "hash_ids": []}}\n'
            for t, i in lines
        )
    )
    sorted_reqs = list(open_trace(p, options=TraceOptions(end_s=5.0)))
    unsorted = list(open_trace(p, options=TraceOptions(end_s=5.0, sorted_input=False)))
    assert [r.input_tokens for r in sorted_reqs] == [5]
    assert [r.input_tokens for r in unsorted] == [5, 7]


def test_token_scaling_and_clamping() -> None:
    """Tokens are scaled, rounded, floored at 1, then clamped."""
    opts = TraceOptions(input_scale=0.1, output_scale=0.01, max_input_tokens=50)
    reqs = list(open_trace(BURST, options=opts))
    assert [(r.input_tokens, r.output_tokens) for r in reqs] == [(47, 1), (12, 2), (50, 1), (50, 1)]


def test_mooncake_scaling_scales_blocks_and_clamping_truncates_them() -> None:
    """Scaling Mooncake inputs scales the block size; clamping keeps the blocks it covers."""
    opts = TraceOptions(input_scale=0.125, max_input_tokens=1000, limit=1)
    (req,) = list(open_trace(MOONCAKE, options=opts))
    assert (req.input_tokens, req.block_tokens) == (1000, 64)
    assert req.prefix_block_ids == tuple(range(16))


def test_gzip_trace_is_read(tmp_path: Path) -> None:
    """A .gz trace reads like the plain file."""
    p = tmp_path / "a.csv.gz"
    p.write_bytes(gzip.compress(AZURE.read_bytes()))
    assert detect_format(p) == "azure"
    assert len(list(open_trace(p))) == 40


def test_header_only_file_has_no_valid_rows(tmp_path: Path) -> None:
    """A trace with a header and no rows raises TraceError after reading."""
    p = tmp_path / "h.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    with pytest.raises(TraceError, match="no valid request rows"):
        list(open_trace(p))


def test_reiterating_restarts_counts() -> None:
    """A second pass yields the same requests and the stats describe that pass alone."""
    reader = open_trace(BAD)
    first = list(reader)
    second = list(reader)
    assert first == second
    assert reader.stats.requests == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit must be >= 1"),
        ({"speedup": 0.0}, "speedup must be > 0"),
        ({"start_s": 5.0, "end_s": 5.0}, "must be greater than start_s"),
        ({"input_scale": -1.0}, "input_scale must be > 0"),
        ({"max_output_tokens": 0}, "max_output_tokens must be >= 1"),
    ],
)
def test_bad_options_raise_config_error(kwargs: dict[str, float], message: str) -> None:
    """Invalid options name the field and the valid range."""
    with pytest.raises(ConfigError, match=message):
        TraceOptions(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("azure_llm_2023_conv.csv", 19366),
        ("azure_llm_2023_code.csv", 8819),
        ("mooncake_synthetic.jsonl", 3993),
    ],
)
def test_shared_traces_read_completely(shared_traces: Path, name: str, count: int) -> None:
    """Every row of the shipped real traces is a valid request."""
    reader = open_trace(shared_traces / name)
    assert sum(1 for _ in reader) == count
    assert reader.stats.skipped == {}


def _columns_as_tuples(reader: TraceReader, chunk_rows: int) -> list[tuple[float, int, int]]:
    out: list[tuple[float, int, int]] = []
    for chunk in reader.columns(chunk_rows):
        out.extend(
            zip(
                chunk.arrival_s.tolist(),
                chunk.input_tokens.tolist(),
                chunk.output_tokens.tolist(),
                strict=True,
            )
        )
    return out


OPTION_CASES = [
    TraceOptions(),
    TraceOptions(limit=7),
    TraceOptions(start_s=2.0, end_s=6.0, speedup=2.0),
    TraceOptions(end_s=5.0, sorted_input=False),
    TraceOptions(input_scale=0.1, output_scale=0.5, max_input_tokens=50, max_output_tokens=9),
]


@pytest.mark.parametrize("path", [AZURE, MOONCAKE, BURST, BAD])
@pytest.mark.parametrize("options", OPTION_CASES)
@pytest.mark.parametrize("chunk_rows", [3, 65536])
def test_columns_match_iteration(path: Path, options: TraceOptions, chunk_rows: int) -> None:
    """The numpy column path gives the same requests and the same stats as iteration."""
    reader = open_trace(path, options=options)
    try:
        expected = [(r.arrival_s, r.input_tokens, r.output_tokens) for r in reader]
    except TraceError:
        with pytest.raises(TraceError, match="no valid request rows"):
            _columns_as_tuples(reader, chunk_rows)
        return
    stats = reader.stats
    got = _columns_as_tuples(reader, chunk_rows)
    assert [g[1:] for g in got] == [e[1:] for e in expected]
    assert [g[0] for g in got] == pytest.approx([e[0] for e in expected], abs=1e-6)
    assert reader.stats.skipped == stats.skipped
    assert reader.stats.requests == stats.requests


def test_columns_chunks_number_their_requests() -> None:
    """Azure chunks hold about chunk_rows rows; each says the index of its first request."""
    chunks = list(open_trace(AZURE).columns(chunk_rows=16))
    assert len(chunks) == 3
    assert [c.first_index for c in chunks] == [0, len(chunks[0]), len(chunks[0]) + len(chunks[1])]
    assert sum(len(c) for c in chunks) == 40


def test_columns_fast_path_reads_utc_offset_timestamps(tmp_path: Path) -> None:
    """2024-style +00:00 timestamps take the vectorised path with the same arrivals."""
    p = tmp_path / "a24.csv"
    p.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.009930+00:00,10,2\n"
        "2024-05-10 00:00:01.509930+00:00,11,3\n"
    )
    (chunk,) = list(open_trace(p).columns())
    assert chunk.arrival_s.tolist() == pytest.approx([0.0, 1.5], abs=1e-6)


def test_columns_mixed_offsets_fall_back_to_rows(tmp_path: Path) -> None:
    """A chunk whose rows carry different UTC offsets is parsed row by row, offsets honoured."""
    p = tmp_path / "mixed.csv"
    p.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.000000+00:00,10,2\n"
        "2024-05-10 02:00:01.000000+02:00,11,3\n"
    )
    (chunk,) = list(open_trace(p).columns())
    assert chunk.arrival_s.tolist() == pytest.approx([0.0, 1.0], abs=1e-6)


@pytest.mark.parametrize("name", ["azure_llm_2023_conv.csv", "mooncake_synthetic.jsonl"])
def test_shared_trace_columns_match_iteration(shared_traces: Path, name: str) -> None:
    """On the real traces the column path equals iteration row for row."""
    reader = open_trace(shared_traces / name)
    expected = [(r.input_tokens, r.output_tokens) for r in reader]
    got = _columns_as_tuples(reader, 4096)
    assert [g[1:] for g in got] == expected


@pytest.mark.parametrize(
    "text",
    ["2023-11-16 18:15:46.6805900", "2024-05-10 00:00:00.009930+00:00", "2024-05-10T00:00:03Z"],
)
def test_positional_timestamp_parse_matches_fromisoformat(text: str) -> None:
    """The fallback parser (for Pythons whose fromisoformat refuses these) agrees with it."""
    from tokenwatt.workload._trace_formats import _parse_iso_s, _parse_iso_slow

    assert _parse_iso_slow(text, {}) == pytest.approx(_parse_iso_s(text, {}), abs=1e-6)


def test_burstgpt_without_session_column(tmp_path: Path) -> None:
    """The original BurstGPT layout (no Session ID column) is detected and read, sessions None."""
    p = tmp_path / "b.csv"
    p.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "0,ChatGPT,472,18,490,Conversation log\n"
        "3,GPT-4,100,0,100,API log\n"
        "4,GPT-4,100,7,107,API log\n"
    )
    reader = open_trace(p)
    assert reader.format == "burstgpt"
    assert [(r.arrival_s, r.session_id, r.output_tokens) for r in reader] == [
        (0.0, None, 18),
        (4.0, None, 7),
    ]


def test_crlf_lines_read_the_same_both_ways(tmp_path: Path) -> None:
    """Windows line endings give the same requests through iteration and columns."""
    p = tmp_path / "crlf.csv"
    p.write_bytes(
        b"TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        b"2023-11-16 18:15:46.5000000,100,10\r\n"
        b"2023-11-16 18:15:47.0000000,200,20\r\n"
    )
    reader = open_trace(p)
    assert [(r.arrival_s, r.input_tokens) for r in reader] == [(0.0, 100), (0.5, 200)]
    assert _columns_as_tuples(reader, 100) == [(0.0, 100, 10), (0.5, 200, 20)]


def test_directory_is_not_a_trace(tmp_path: Path) -> None:
    """A directory path raises TraceError saying it is a directory."""
    with pytest.raises(TraceError, match="is a directory"):
        open_trace(tmp_path)


def test_request_count_tracks_what_was_consumed() -> None:
    """Mid-pass, stats count the requests handed out so far, not the chunk parsed ahead."""
    import itertools

    reader = open_trace(AZURE)
    taken = list(itertools.islice(iter(reader), 10))
    assert reader.stats.requests == 10
    assert reader.stats.last_arrival_s == taken[-1].arrival_s


def test_mooncake_non_integer_hash_ids_are_malformed(tmp_path: Path) -> None:
    """A line whose hash_ids hold a string or a float is skipped as malformed."""
    p = tmp_path / "m.jsonl"
    p.write_text(
        '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1, "2"]}\n'
        '{"timestamp": 1, "input_length": 5, "output_length": 1, "hash_ids": [1, 2.5]}\n'
        '{"timestamp": 2, "input_length": 5, "output_length": 1, "hash_ids": [1, 2]}\n'
    )
    reader = open_trace(p)
    assert [r.prefix_block_ids for r in reader] == [(1, 2)]
    assert reader.stats.skipped == {"malformed": 2}
