"""Events of the planner's loop: each handles itself and returns the events it causes.

At equal times arrivals go first, then cold-start completions, iteration ends, autoscaler ticks:
an iteration boundary admits every request that arrived up to and including its time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tokenwatt.plan.fleet import Wakeup
from tokenwatt.plan.replica import Replica, SimRequest

if TYPE_CHECKING:
    from tokenwatt.plan.simulator import Simulation

__all__ = ["Arrival", "Event", "Ingress", "IterationEnd", "ReplicaReady", "Tick"]


class Event:
    """Something that happens at ``time_s``; ``priority`` orders events at equal times."""

    __slots__ = ("time_s",)
    priority = 0

    def __init__(self, time_s: float) -> None:
        self.time_s = time_s

    def handle(self, sim: Simulation) -> Sequence[Event]:
        """Apply the event; returns the events it causes."""
        raise NotImplementedError


def _wakeups(ws: Sequence[Wakeup]) -> list[Event]:
    return [IterationEnd(t, r, v) for t, r, v in ws]


class Arrival(Event):
    """A request arrives (at its trace time) and, after its serving overhead, is routed; the
    next request of the trace is read then, so arrivals stay in trace order whatever each
    request's overhead."""

    __slots__ = ("request",)
    priority = 0

    def __init__(self, time_s: float, request: SimRequest) -> None:
        self.time_s = time_s
        self.request = request

    def handle(self, sim: Simulation) -> Sequence[Event]:
        """Route the request (now, or at its ingress) and schedule the next arrival."""
        sim.metrics.arrived += 1
        sim.arrivals_since_tick += 1
        sim.timeline.arrival(self.time_s)
        out: list[Event] = []
        delay_s = sim.ingress.delay_s(self.request.request_id)
        if delay_s > 0:
            sim.in_flight += 1
            out.append(Ingress(self.time_s + delay_s, self.request))
        else:
            w = sim.fleet.route(self.request, self.time_s)
            if w is not None:
                out.append(IterationEnd(w[0], w[1], w[2]))
        nxt = sim.next_arrival()
        if nxt is not None:
            out.append(nxt)
        return out


class Ingress(Event):
    """A request leaves the serving stack (its overhead spent) and is routed to a replica."""

    __slots__ = ("request",)
    priority = 0

    def __init__(self, time_s: float, request: SimRequest) -> None:
        self.time_s = time_s
        self.request = request

    def handle(self, sim: Simulation) -> Sequence[Event]:
        """Route the request."""
        sim.in_flight -= 1
        w = sim.fleet.route(self.request, self.time_s)
        return () if w is None else (IterationEnd(w[0], w[1], w[2]),)


class IterationEnd(Event):
    """A replica's iteration (or fast-mode decode run) ends; stale if the version moved on."""

    __slots__ = ("replica", "version")
    priority = 2

    def __init__(self, time_s: float, replica: Replica, version: int) -> None:
        self.time_s = time_s
        self.replica = replica
        self.version = version

    def handle(self, sim: Simulation) -> Sequence[Event]:
        """Finish the iteration and schedule the next one."""
        replica = self.replica
        if replica.version != self.version or replica.state in ("off", "starting"):
            return ()
        sim.iterations += 1
        t = replica.end_iteration(self.time_s)
        if t is None:
            return ()
        return (IterationEnd(t, replica, replica.version),)


class ReplicaReady(Event):
    """A replica's cold start completes."""

    __slots__ = ("replica", "version")
    priority = 1

    def __init__(self, time_s: float, replica: Replica, version: int) -> None:
        self.time_s = time_s
        self.replica = replica
        self.version = version

    def handle(self, sim: Simulation) -> Sequence[Event]:
        """Put the replica in service (unless its start was cancelled)."""
        replica = self.replica
        if replica.version != self.version or replica.state != "starting":
            return ()
        return _wakeups(sim.fleet.on_ready(replica, self.time_s))


class Tick(Event):
    """The autoscaler observes the fleet and the fleet follows its decision."""

    __slots__ = ()
    priority = 3

    def handle(self, sim: Simulation) -> Sequence[Event]:
        """Scale, sample the timeline, and schedule the next tick while work remains."""
        now = self.time_s
        fleet = sim.fleet
        state = fleet.state(now, sim.arrivals_since_tick, sim.tick_s)
        sim.arrivals_since_tick = 0
        sim.timeline.sample(now, state.current, state.waiting)
        rec = sim.autoscaler.observe(state)
        target = sim.governor.decide(now, state.current, rec)
        starts = fleet.scale_to(target, now) if target != state.current else []
        out: list[Event] = [ReplicaReady(t, r, v) for t, r, v in starts]
        # requests still in the serving stack will reach the fleet: keep ticking for them
        done = sim.exhausted and sim.in_flight == 0
        if done and state.outstanding == 0:
            return out
        if done and target == 0 and state.current == 0:
            sim.stalled = True
            return out
        out.append(Tick(now + sim.tick_s))
        return out
