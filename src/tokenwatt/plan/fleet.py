"""The fleet: replicas, the router in front of them, requests waiting for any replica, scaling.

Methods return ``(time, replica, version)`` wake-ups for the event loop; stale versions are
ignored there, which is how a rescheduled replica cancels its old iteration end.
"""

from __future__ import annotations

import random
from collections import deque

from tokenwatt.plan.autoscalers import FleetState
from tokenwatt.plan.replica import Replica, ReplicaEnv, SimRequest
from tokenwatt.plan.routers import Router

__all__ = ["Fleet", "Wakeup"]

Wakeup = tuple[float, Replica, int]
"""(time, replica, version) at which a replica's iteration ends or its cold start completes."""


class Fleet:
    """Replicas behind one router; requests wait in ``pending`` while no replica is ready."""

    def __init__(
        self,
        env: ReplicaEnv,
        router: Router,
        cold_start_s: float,
        jitter_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.env = env
        self.router = router
        self.cold_start_s = cold_start_s
        self.jitter_s = jitter_s
        self._rng = random.Random(seed)
        self.replicas: list[Replica] = []
        self.accepting: list[Replica] = []
        self.pending: deque[SimRequest] = deque()

    def boot(self, count: int) -> None:
        """Start ``count`` replicas ready at time 0 (no cold start: the fleet exists already)."""
        for _ in range(count):
            r = self._spare()
            r.start(0.0)
            r.become_ready(0.0)
            self.accepting.append(r)

    def _spare(self) -> Replica:
        for r in self.replicas:
            if r.state == "off":
                return r
        r = Replica(len(self.replicas), self.env)
        self.replicas.append(r)
        return r

    # routing ------------------------------------------------------------------------------
    def route(self, req: SimRequest, now: float) -> Wakeup | None:
        """Send ``req`` to a replica (or hold it); returns the replica's wake-up if it changed."""
        if req.input_tokens + req.output_tokens > self.env.kv_capacity_tokens:
            self.env.metrics.drop("exceeds_kv_capacity")
            return None
        if not self.accepting:
            self.pending.append(req)
            return None
        replica = self.router.choose(self.accepting, req)
        t = replica.enqueue(req, now)
        return None if t is None else (t, replica, replica.version)

    def on_ready(self, replica: Replica, now: float) -> list[Wakeup]:
        """A cold start finished: the replica serves, and takes held requests."""
        out: list[Wakeup] = []
        t = replica.become_ready(now)
        if t is not None:
            out.append((t, replica, replica.version))
        self.accepting.append(replica)
        pending = self.pending
        while pending:
            w = self.route(pending.popleft(), now)
            if w is not None:
                out.append(w)
        # a replica rescheduled twice keeps only its latest wake-up
        latest = {id(w[1]): w for w in out}
        return [w for w in out if latest[id(w[1])] is w]

    # scaling ------------------------------------------------------------------------------
    def current(self) -> int:
        """Replicas ready (not draining) or starting."""
        return len(self.accepting) + sum(1 for r in self.replicas if r.state == "starting")

    def scale_to(self, target: int, now: float) -> list[Wakeup]:
        """Start or drain replicas to reach ``target``; returns cold-start completions."""
        out: list[Wakeup] = []
        starting = [r for r in self.replicas if r.state == "starting"]
        current = len(self.accepting) + len(starting)
        while current < target:
            draining = [r for r in self.replicas if r.state == "draining"]
            if draining:
                # taking a draining replica back costs no cold start
                r = draining[0]
                r.state = "ready"
                self.accepting.append(r)
            else:
                r = self._spare()
                r.start(now)
                delay = self.cold_start_s
                if self.jitter_s > 0:
                    delay += self._rng.uniform(0.0, self.jitter_s)
                out.append((now + delay, r, r.version))
            current += 1
        while current > target:
            if starting:
                starting.pop().drain(now)
            else:
                victim = min(self.accepting, key=lambda r: (r.outstanding, -r.index))
                self.accepting.remove(victim)
                victim.drain(now)
            current -= 1
        return out

    def state(self, now: float, arrivals: int, tick_s: float) -> FleetState:
        """The autoscaler's view of the fleet at ``now``."""
        waiting = len(self.pending)
        outstanding = len(self.pending)
        kv = 0.0
        starting = 0
        for r in self.replicas:
            if r.state == "starting":
                starting += 1
            outstanding += r.outstanding
            waiting += len(r.waiting)
        for r in self.accepting:
            kv += r.kv_used
        ready = len(self.accepting)
        cap = self.env.kv_capacity_tokens * ready
        e2e = self.env.metrics.e2e
        return FleetState(
            time_s=now,
            ready=ready,
            starting=starting,
            outstanding=outstanding,
            waiting=waiting,
            kv_usage=kv / cap if cap else 0.0,
            arrivals=arrivals,
            tick_s=tick_s,
            mean_latency_s=e2e.mean,
        )
