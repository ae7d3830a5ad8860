"""What the demo shows while it runs: load, instances and decisions, live in the terminal.

A rich `Live` panel redraws a few times a second from the daemon's own state (journal, handler,
inventory) and the load generator; when stdout is not a terminal, one plain line is printed per
change instead, so the demo also reads well in a log or a CI job. In the served world it also
lists every member with its lifecycle state (registering, ready, draining) and the requests/s it
served, as the load generator counted them from the answers.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from autoscaler.runtime import daemon

BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True, slots=True)
class Frame:
    """One observation of the demo world."""

    day_time: str
    sessions: float
    current: int
    ready: int
    desired: int
    state: str
    reason: str
    outcome: str
    members: tuple[tuple[str, str, float | None], ...] = ()
    """(name, state, requests/s served or None when not measured) per instance, in the served world."""
    failed_rate: float = 0.0
    """Requests/s that got no answer from any instance (the served world)."""


def sparkline(values: list[float], top: float) -> str:
    """Values as a row of block characters scaled to `top`."""
    if top <= 0:
        return ""
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1)))] for v in values)


class DemoView:
    """Reads the daemon and the load source; renders frames live or as lines."""

    def __init__(
        self,
        runner: daemon.Daemon,
        group: str,
        load: Callable[[], tuple[str, float]],
        banner: str,
        *,
        load_label: str = "sessions",
        served: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        """`served` gives requests/s per instance name ('failed' for unanswered ones) when measured."""
        self.runner = runner
        self.group = group
        self.load = load
        self.banner = banner
        self.load_label = load_label
        self.served = served
        self.history: collections.deque[Frame] = collections.deque(maxlen=60)
        self.decisions: collections.deque[str] = collections.deque(maxlen=8)
        self._last_tick = 0
        self.force_plain = False
        """Print lines even on a terminal."""

    def observe(self) -> Frame:
        """A frame of the world as it is now."""
        day_time, sessions = self.load()
        handler = self.runner.group(self.group)
        inventory = handler.inventory if handler is not None else None
        last = self.runner.journal.last(self.group)
        if last is not None and last.tick != self._last_tick:
            self._last_tick = last.tick
            if last.outcome != "none":
                stamp = datetime.fromtimestamp(last.decision.at).strftime("%H:%M:%S")
                self.decisions.append(f"{stamp} [{day_time}] {last.outcome}: {last.decision.reason}")
        rates = self.served() if self.served is not None else {}
        instances = inventory.instances if inventory is not None else ()
        members = tuple(
            (i.name, i.state.value, rates.get(i.name, 0.0) if self.served is not None else None)
            for i in instances
        )
        frame = Frame(
            day_time=day_time,
            sessions=sessions,
            current=inventory.current if inventory is not None else 0,
            ready=inventory.ready if inventory is not None else 0,
            desired=last.decision.desired if last is not None else 0,
            state=handler.shown_state.value if handler is not None else "starting",
            reason=last.decision.reason if last is not None else "",
            outcome=last.outcome if last is not None else "",
            members=members,
            failed_rate=rates.get("failed", 0.0),
        )
        self.history.append(frame)
        return frame

    def render(self, frame: Frame) -> Panel:
        """The live panel."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        top = max([f.sessions for f in self.history] + [1.0])
        sizes = [float(f.current) for f in self.history]
        table.add_row("office time", frame.day_time)
        table.add_row(
            self.load_label, f"{frame.sessions:7.1f}  {sparkline([f.sessions for f in self.history], top)}"
        )
        table.add_row("instances", f"{frame.current:3d} ({frame.ready} ready)  {sparkline(sizes, 10.0)}")
        table.add_row("desired", str(frame.desired))
        table.add_row("state", frame.state)
        table.add_row("last decision", frame.reason or "-")
        recent = "\n".join(self.decisions) or "(none yet)"
        parts: list[Table | Panel] = [table]
        if self.served is not None:
            parts.append(Panel(self._members_table(frame), title="instances: requests/s served"))
        parts.append(Panel(recent, title="actions"))
        return Panel(Group(*parts), title=self.banner)

    @staticmethod
    def _members_table(frame: Frame) -> Table:
        members = Table.grid(padding=(0, 2))
        for name, state, rate in frame.members:
            shown = f"{rate:5.1f}/s  {'#' * round(rate * 4)}" if rate is not None else "-"
            members.add_row(name, state, shown)
        members.add_row("(no answer)", "", f"{frame.failed_rate:5.1f}/s")
        return members

    def line(self, frame: Frame) -> str:
        """The plain-text form of a frame."""
        text = (
            f"[{frame.day_time}] {self.load_label}={frame.sessions:.0f} instances={frame.current} "
            f"ready={frame.ready} desired={frame.desired} state={frame.state} {frame.outcome}: {frame.reason}"
        )
        if self.served is None:
            return text
        members = " ".join(f"{name}:{state}:{rate or 0.0:.1f}/s" for name, state, rate in frame.members)
        return f"{text} | served {members or '-'} failed:{frame.failed_rate:.1f}/s"

    async def run(self, console: Console, interval: float = 0.5) -> None:
        """Until cancelled: a live panel on a terminal, else a line whenever something changed."""
        if console.is_terminal and not self.force_plain:
            with Live(self.render(self.observe()), console=console, refresh_per_second=4) as live:
                while True:
                    await asyncio.sleep(interval)
                    live.update(self.render(self.observe()))
        previous: tuple[object, ...] | None = None
        loop = asyncio.get_running_loop()
        while True:
            frame = self.observe()
            key: tuple[object, ...] = (frame.current, frame.desired, frame.state, frame.reason)
            if self.served is not None:  # member states, and the rates every few seconds
                key += (tuple(m[:2] for m in frame.members), int(loop.time() / 5))
            if key != previous:
                console.print(self.line(frame), highlight=False, soft_wrap=True)
                previous = key
            await asyncio.sleep(interval)
