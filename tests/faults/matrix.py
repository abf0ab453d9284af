"""The fault matrix: declared faults, run through the product, judged the same way.

A ``Scenario`` declares its fault, the message the user must see (a regular expression on
``"<error|notice> [<source>] <message>"``, or None for a fault the product absorbs without a
word), a deadline for that message and one for recovery (a turn that succeeds after the fault),
and how many turns the conversation holds when it is loaded again. Its ``run`` arranges the fault
and drives the app (``Context.rig``), or a child process that does (``Observed`` comes back as
JSON), the way a user would, including pressing Retry when told to.

``judge`` turns what was observed into a ``Verdict``: **clear** (the declared message — or, for an
absorbed fault, none — within its deadline, recovery in time, no lost turn, no broken invariant),
**silent** (a message was due and none matched), **crash** (an exception escaped, the run hung,
or the loop reported an unhandled exception), or **failed** (late, not recovered, turns lost,
an invariant broken, a key in a log record). Deadlines are in the scenario's clock: virtual
seconds for virtual scenarios (exact), wall seconds for the others (measured, reported; tests
do not hold wall-clock scenarios to them, the bench does).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant import secrets
from assistant.bench.invariants import spellings
from assistant.events import ErrorEvent, Source, TurnFinished
from tests.faults.rig import Rig

#: How long one scenario may run (wall seconds) before it counts as hung.
HANG_SECONDS = 60.0


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str
    fault: str
    message: str | None
    source: Source | None
    message_within: float
    recover_within: float
    turns: int
    run: Callable[[Context], Awaitable[Observed | None]]
    virtual: bool = True
    #: Part of the CI suite (the bench runs every scenario).
    ci: bool = True


@dataclass
class Observed:
    """What the user saw and what was on disk afterwards."""

    #: (rig seconds, "error"/"notice", source, message)
    shown: list[tuple[float, str, str, str]] = field(default_factory=list)
    fault_at: float | None = None
    #: (rig seconds, the turn succeeded) for each finished turn, in order
    turns: list[tuple[float, bool]] = field(default_factory=list)
    reloaded: int = 0
    violations: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, rig: Rig) -> Observed:
        shown = [
            (
                s.at,
                "error" if isinstance(s.event, ErrorEvent) else "notice",
                str(s.event.source),
                s.event.message,
            )
            for s in rig.shown()
        ]
        times = {e.turn.turn_id: t for t, e in rig.events if isinstance(e, TurnFinished)}
        turns = [
            (times.get(t.turn_id, 0.0), bool(t.assistant_text) and not t.error)
            for t in rig.finished()
        ]
        return cls(
            shown=shown,
            fault_at=rig.fault_at,
            turns=turns,
            reloaded=rig.reloaded_turns(),
            violations=rig.invariants.violations(),
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Observed:
        data = json.loads(text)
        data["shown"] = [tuple(s) for s in data["shown"]]
        data["turns"] = [tuple(t) for t in data["turns"]]
        return cls(**data)


class Context:
    """What a scenario's ``run`` gets: a directory, a canary key, a cleanup stack, and rigs."""

    def __init__(self, directory: Path, stack: contextlib.AsyncExitStack) -> None:
        self.directory = directory
        self.stack = stack
        self.canary = f"sk-canary-{uuid.uuid4().hex}"
        self.rigs: list[Rig] = []
        self._undo: list[Callable[[], None]] = []

    def patch(self, target: Any, name: str, value: Any) -> None:
        """``target.name = value`` until the scenario ends."""
        old = getattr(target, name)
        setattr(target, name, value)
        self._undo.append(lambda: setattr(target, name, old))

    def env(self, name: str, value: str | None) -> None:
        import os

        old = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

        def undo() -> None:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old

        self._undo.append(undo)

    def keys_in_environment(self) -> None:
        """Every provider's key is the canary (one with a trailing CR LF, as pasted on Windows)."""
        for i, var in enumerate(secrets.ENV_VARS.values()):
            self.env(var, self.canary + ("\r\n" if i % 2 else ""))

    async def rig(self, **options: Any) -> Rig:
        """A started ``Rig`` (closed when the scenario ends)."""
        options.setdefault("canaries", [self.canary])
        rig = Rig(self.directory, **options)
        self.rigs.append(rig)
        await self.stack.enter_async_context(rig)
        return rig

    def undo(self) -> None:
        for undo in reversed(self._undo):
            with contextlib.suppress(Exception):
                undo()
        self._undo.clear()


@dataclass
class Verdict:
    scenario: Scenario
    status: str  # clear | silent | crash | failed
    reasons: list[str]
    message: str | None = None
    time_to_message: float | None = None
    time_to_recover: float | None = None
    lost: int = 0
    wall_seconds: float = 0.0


class _LogWatch(logging.Handler):
    """Every log record while a scenario runs, formatted with its traceback, kept as text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(self.format(record))


@contextlib.contextmanager
def _watching_logs() -> Iterator[_LogWatch]:
    root = logging.getLogger()
    watch = _LogWatch()
    level = root.level
    root.addHandler(watch)
    root.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        root.removeHandler(watch)
        root.setLevel(level)


async def run_one(scenario: Scenario, directory: Path) -> Verdict:
    """Run ``scenario`` in ``directory`` (which exists) and judge it."""
    loop = asyncio.get_running_loop()
    unhandled: list[str] = []
    previous_handler = loop.get_exception_handler()

    def on_unhandled(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        unhandled.append(f"{context.get('message')}: {exc!r}")

    loop.set_exception_handler(on_unhandled)
    crash: str | None = None
    observed: Observed | None = None
    started = time.monotonic()
    ctx: Context | None = None
    with _watching_logs() as logs:
        try:
            async with asyncio.timeout(HANG_SECONDS):
                async with contextlib.AsyncExitStack() as stack:
                    ctx = Context(directory, stack)
                    stack.callback(ctx.undo)
                    observed = await scenario.run(ctx)
                    if observed is None and ctx.rigs:
                        for rig in ctx.rigs:
                            await rig.close()
                        observed = Observed.of(ctx.rigs[-1])
        except TimeoutError:
            crash = f"hung for {HANG_SECONDS:g} s"
        except Exception as exc:
            crash = "".join(traceback.format_exception_only(exc)).strip()
        finally:
            loop.set_exception_handler(previous_handler)
    wall = time.monotonic() - started
    if crash is None and unhandled:
        crash = f"unhandled in the loop: {unhandled[0]}"
    if crash is None and observed is None:
        crash = "the scenario observed nothing"
    if crash is not None or observed is None:
        return Verdict(scenario, "crash", [crash or "?"], wall_seconds=wall)
    canaries = spellings(ctx.canary) if ctx is not None else set()
    leaked = [line for line in logs.lines if any(c in line for c in canaries)]
    return judge(scenario, observed, wall, leaked)


def judge(
    scenario: Scenario, observed: Observed, wall: float = 0.0, leaked_logs: Sequence[str] = ()
) -> Verdict:
    reasons: list[str] = []
    fault_at = observed.fault_at if observed.fault_at is not None else 0.0
    lines = [(t, f"{kind} [{source}] {message}") for t, kind, source, message in observed.shown]
    message: str | None = None
    time_to_message: float | None = None
    silent = False
    if scenario.message is not None:
        pattern = re.compile(scenario.message, re.S)
        match = next(((t, line) for t, line in lines if pattern.search(line)), None)
        if match is None:
            silent = True
            reasons.append(f"no message matching {scenario.message!r}; shown: {lines}")
        else:
            message = match[1]
            time_to_message = max(0.0, match[0] - fault_at)
            if time_to_message > scenario.message_within:
                reasons.append(
                    f"message after {time_to_message:.2f} s (deadline "
                    f"{scenario.message_within:g} s)"
                )
    else:
        errors = [line for _, line in lines if line.startswith("error")]
        if errors:
            reasons.append(f"an absorbed fault showed errors: {errors}")
    recovered = next((t for t, ok in observed.turns if ok and t >= fault_at), None)
    time_to_recover = None if recovered is None else recovered - fault_at
    if time_to_recover is None:
        reasons.append("no turn succeeded after the fault")
    elif time_to_recover > scenario.recover_within:
        reasons.append(
            f"recovered after {time_to_recover:.2f} s (deadline {scenario.recover_within:g} s)"
        )
    lost = max(0, scenario.turns - observed.reloaded)
    if observed.reloaded != scenario.turns:
        reasons.append(f"{observed.reloaded} turns on disk, {scenario.turns} expected")
    reasons.extend(f"invariant: {v}" for v in observed.violations)
    reasons.extend(f"a log record holds the key: {line[:120]}" for line in leaked_logs[:3])
    if silent:
        status = "silent"
    elif reasons:
        status = "failed"
    else:
        status = "clear"
    return Verdict(scenario, status, reasons, message, time_to_message, time_to_recover, lost, wall)


def late_only(verdict: Verdict) -> bool:
    """Every reason is a missed deadline (a wall-clock scenario on a slow machine)."""
    return bool(verdict.reasons) and all(
        r.startswith(("message after", "recovered after")) for r in verdict.reasons
    )


#: The verdicts of the scenarios a test run ran, and its soaks' reports, for its summary
#: (``tests/faults/conftest.py``).
CI_VERDICTS: list[Verdict] = []
CI_SOAKS: list[Any] = []


def summary(verdicts: Sequence[Verdict]) -> str:
    """The matrix's figures, as ``parley bench faults`` prints them."""
    import numpy as np

    count = {s: sum(v.status == s for v in verdicts) for s in ("clear", "silent", "crash")}
    lost = sum(v.lost for v in verdicts)
    header = f"{'scenarios':>9} | {'clear message':>13} | {'silent':>6} | {'crash':>5} | lost turns"
    row = f"{len(verdicts):>9} | {count['clear']:>13} | {count['silent']:>6} | "
    row += f"{count['crash']:>5} | {lost:>10}"
    out = [header, row]

    def figures(values: list[float]) -> str:
        if not values:
            return "n/a"
        a = np.array(values)
        p50, p90 = np.percentile(a, 50), np.percentile(a, 90)
        return f"p50 {p50:.2f} s, p90 {p90:.2f} s, max {a.max():.2f} s"

    for label, virtual in (("virtual time", True), ("wall time", False)):
        group = [v for v in verdicts if v.scenario.virtual is virtual]
        if not group:
            continue
        messages = [v.time_to_message for v in group if v.time_to_message is not None]
        recovers = [v.time_to_recover for v in group if v.time_to_recover is not None]
        out.append(f"{label} ({len(group)} scenarios): time to message {figures(messages)}")
        out.append(f"{'':>{len(label)}}  time to recover {figures(recovers)}")
    failed = [v for v in verdicts if v.status != "clear"]
    for v in failed:
        out.append(f"  {v.status}: {v.scenario.name}: {'; '.join(v.reasons)[:400]}")
    return "\n".join(out)
