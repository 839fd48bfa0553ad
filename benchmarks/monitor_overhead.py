"""Claim: the energy monitor is cheap. Sampler under 1% of one core at 10 Hz; window op under 50 us.

Measures, side by side in one run (medians of --repeats):
  * sampler CPU share: this process's CPU time over wall time while the sampler runs at each
    rate, minus the same process idling for as long (the baseline);
  * one begin/end window pair, per op, against the baseline of one bare meter read.
Meters: whatever ``detect_meters`` finds here (the CPU model on a machine without sensors).
"""

from __future__ import annotations

import argparse
import statistics
import time

from tokenwatt.energy import EnergyMonitor, Meter, detect_meters


def cpu_share(monitor: EnergyMonitor | None, duration_s: float) -> float:
    """Fraction of one core this process used over ``duration_s`` (sampler on when given)."""
    if monitor is not None:
        monitor.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(duration_s)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    if monitor is not None:
        monitor.stop()
    return (cpu1 - cpu0) / (wall1 - wall0)


def per_call_s(fn: object, calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` calls."""
    assert callable(fn)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10,100", help="sampler rates (Hz), comma-separated")
    parser.add_argument("--duration-s", type=float, default=3.0, help="seconds per CPU-share run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--pairs", type=int, default=5000, help="window pairs per timing run")
    parser.add_argument(
        "--cpu-mode", default="process", choices=["process", "tree", "children", "machine"]
    )
    args = parser.parse_args()

    meters: list[Meter] = detect_meters(cpu_mode=args.cpu_mode)
    components = [f"{c.name} ({c.source}, {c.scope})" for m in meters for c in m.components]
    print(f"meters: {', '.join(components)}")
    monitor = EnergyMonitor(meters, sample_hz=0)

    idle = statistics.median(cpu_share(None, args.duration_s) for _ in range(args.repeats))
    print(f"baseline: idle process uses {idle * 100:.3f}% of one core")
    for rate in (float(r) for r in args.rates.split(",")):
        sampling = EnergyMonitor(monitor.meter, sample_hz=rate)
        share = statistics.median(cpu_share(sampling, args.duration_s) for _ in range(args.repeats))
        print(
            f"sampler at {rate:g} Hz: {share * 100:.3f}% of one core, "
            f"{(share - idle) * 100:.3f}% above idle (target < 1% at 10 Hz)"
        )

    read_s = statistics.median(
        per_call_s(monitor.read, args.pairs * 2) for _ in range(args.repeats)
    )

    def pair() -> None:
        monitor.begin_window("w")
        monitor.end_window("w")

    pair_s = statistics.median(per_call_s(pair, args.pairs) for _ in range(args.repeats))
    op_us, read_us = pair_s / 2 * 1e6, read_s * 1e6
    print(f"bare meter read: {read_us:.2f} us (baseline)")
    print(
        f"window op (half a begin/end pair): {op_us:.2f} us, {op_us / read_us:.2f}x a bare read, "
        f"{op_us - read_us:.2f} us of bookkeeping (target < 50 us)"
    )
    monitor.close()


if __name__ == "__main__":
    main()
