"""Claim: tokenwatt's trace readers parse Azure CSV fast enough for week-long traces.

Builds an Azure-format CSV of ``--rows`` rows by repeating a real trace (one hour later per copy),
then reads it three ways in the same run, median of ``--repeats`` runs each:
  baseline  csv.reader + datetime.fromisoformat per row (the obvious reader)
  requests  tokenwatt open_trace(): one Request object per row
  columns   tokenwatt open_trace().columns(): numpy chunks, vectorised parsing
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from tokenwatt.workload.traces import open_trace

DEFAULT_TRACE = (
    Path(__file__).resolve().parents[2] / "shared" / "traces" / "azure_llm_2023_conv.csv"
)


def build(source: Path, rows: int, out: Path) -> int:
    """Write ``rows`` rows of ``source`` repeated, each copy shifted one hour later."""
    with source.open() as fh:
        header = fh.readline()
        body = [line.rstrip("\n").split(",") for line in fh if line.strip()]
    written = 0
    with out.open("w") as fh:
        fh.write(header)
        copy = 0
        while written < rows:
            shift = timedelta(hours=copy)
            for ts, inp, gen in body:
                if written >= rows:
                    break
                t = datetime.fromisoformat(ts) + shift
                fh.write(f"{t:%Y-%m-%d %H:%M:%S.%f}0,{inp},{gen}\n")
                written += 1
            copy += 1
    return written


def baseline(path: Path) -> int:
    n = 0
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        t0 = None
        for ts, inp, gen in reader:
            t = datetime.fromisoformat(ts).timestamp()
            t0 = t if t0 is None else t0
            _ = (t - t0, int(inp), int(gen))
            n += 1
    return n


def requests(path: Path) -> int:
    return sum(1 for _ in open_trace(path, format="azure"))


def columns(path: Path) -> int:
    return sum(len(c) for c in open_trace(path, format="azure").columns())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="Azure CSV to repeat")
    ap.add_argument("--rows", type=int, default=500_000, help="rows in the generated file")
    ap.add_argument("--repeats", type=int, default=5, help="runs per reader (median taken)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "azure_big.csv"
        n = build(args.trace, args.rows, path)
        print(f"file: {n:,} rows, {path.stat().st_size / 1e6:.1f} MB")
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for name, fn in (("baseline", baseline), ("requests", requests), ("columns", columns)):
            walls, cpus = [], []
            for _ in range(args.repeats):
                t, c = time.perf_counter(), time.process_time()
                got = fn(path)
                walls.append(time.perf_counter() - t)
                cpus.append(time.process_time() - c)
                assert got == n, (name, got, n)
            wall[name] = n / statistics.median(walls)
            cpu[name] = n / statistics.median(cpus)
        # On a shared machine, CPU time is the steadier figure; both are printed.
        print("reader     wall M rows/s  cpu M rows/s  ratio (cpu)")
        for name in wall:
            ratio = cpu[name] / cpu["baseline"]
            print(f"{name:9s} {wall[name] / 1e6:10.2f} {cpu[name] / 1e6:13.2f} {ratio:8.2f}x")


if __name__ == "__main__":
    main()
