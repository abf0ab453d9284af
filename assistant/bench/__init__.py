"""Benchmarks that print figures (``parley bench …`` or ``python -m assistant.bench …``)."""

from __future__ import annotations


def run_bench(
    which: str,
    *,
    turns: int = 200,
    quick: bool = False,
    compare: bool = False,
    ablate: list[str] | None = None,
    curve: str | None = None,
    repeat: int = 1,
    local: bool = False,
) -> int:
    import sys

    from assistant.cli import AUDIO_SWITCH_INTERVAL

    sys.setswitchinterval(AUDIO_SWITCH_INTERVAL)  # as the app runs (python -m assistant.bench too)
    if which == "overhead":
        from assistant.bench.overhead import main as overhead

        return overhead(turns=turns if not quick else min(turns, 40))
    if which == "echo":
        from assistant.bench.echo import main as echo

        return echo(quick=quick)
    if which == "engines":
        from assistant.bench.engines import main as engines

        return engines(quick=quick)
    if which == "latency":
        from assistant.bench.latency import main as latency

        return latency(quick=quick, compare=compare, ablate=ablate, curve=curve, repeat=repeat)
    if which == "faults":
        from assistant.bench.faults import main as faults

        return faults(quick=quick)
    if which == "soak":
        from assistant.bench.soak import main as soak

        return soak(turns=turns if not quick else min(turns, 40), local=local)
    if which == "tools":
        from assistant.bench.tools import main as tools

        return tools(quick=quick)
    if which == "turns":
        from assistant.bench.turns import main as turn_taking

        return turn_taking(quick=quick)
    raise ValueError(f"unknown benchmark {which!r}")
