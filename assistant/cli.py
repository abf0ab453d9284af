"""The ``parley`` command: the desktop app, and headless ``talk``, ``bench`` and ``voices``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from assistant import __version__
from assistant.config import Settings, SettingsError, load_settings

LANG_HELP = "language code, e.g. en, en-GB, de, es, fr"
AUDIO_SWITCH_INTERVAL = 0.001


def _talk_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "talk",
        help="a headless conversation: a WAV file in as the microphone, the answer out to a WAV",
    )
    p.add_argument("--input", required=True, type=Path, help="WAV file spoken into the microphone")
    p.add_argument("--output", type=Path, help="WAV file for the assistant's audio")
    p.add_argument("--timeline", type=Path, help="JSON file for the per-turn latency timeline")
    p.add_argument("--stt", help="speech-to-text engine (default from settings: local)")
    p.add_argument("--llm", help="language model engine (default from settings: local)")
    p.add_argument("--tts", help="text-to-speech engine (default from settings: local)")
    p.add_argument(
        "--s2s",
        help="speech-to-speech engine, instead of --stt/--llm/--tts (openai-realtime, "
        "assemblyai-agent)",
    )
    p.add_argument("--language", help=LANG_HELP)
    p.add_argument("--voice", help="voice id (see `parley voices`)")
    p.add_argument(
        "--turns",
        choices=("ptt", "vad"),
        help="push-to-talk (one press over the file) or VAD turns",
    )
    p.add_argument(
        "--pace",
        choices=("fast", "realtime"),
        default="realtime",
        help="feed the file at real-time pace or as fast as possible",
    )
    p.add_argument(
        "--history", type=Path, help="conversation directory to use (default: a temporary one)"
    )
    p.add_argument(
        "--tools",
        choices=("default", "none"),
        default="default",
        help="offer the built-in tools (and any MCP servers) to the model, or none",
    )
    p.add_argument(
        "--mcp",
        type=Path,
        metavar="CONFIG.toml",
        help="MCP servers to use, as [servers.NAME] tables (command/args/env or url)",
    )
    p.add_argument(
        "--structured",
        type=Path,
        metavar="SCHEMA.json",
        help="extract an object matching this JSON Schema from every turn",
    )
    p.add_argument(
        "--echo",
        metavar="DELAY_MS[:GAIN_DB]",
        help="play in a software room: the assistant's own voice comes back into the "
        "microphone at this delay and gain (default -6 dB) with a little reverb, as on a "
        "laptop's speakers (needs --pace realtime)",
    )
    p.add_argument(
        "--aec",
        choices=("on", "off"),
        help="echo cancellation on or off (default from settings: auto)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description="Parley, a voice assistant.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    parser.add_argument("--version", action="version", version=f"parley {__version__}")
    sub = parser.add_subparsers(dest="command")
    _talk_parser(sub)
    bench = sub.add_parser("bench", help="print performance figures")
    bench.add_argument(
        "which",
        choices=("overhead", "latency", "echo", "engines", "tools", "turns", "faults", "soak"),
        help="what to measure",
    )
    bench.add_argument(
        "--turns", type=int, default=200, help="turns per scenario (overhead), turns (soak)"
    )
    bench.add_argument("--quick", action="store_true", help="a shorter run")
    bench.add_argument(
        "--compare",
        action="store_true",
        help="latency: the speed levers off and on, turn by turn, with ratios",
    )
    bench.add_argument(
        "--ablate",
        action="append",
        metavar="LEVER",
        help="latency: also run without this speed lever (repeatable)",
    )
    bench.add_argument(
        "--curve",
        metavar="DIAL=V1,V2",
        help="latency: hands-free turns over the values of one setting, "
        "e.g. vad.smart_turn_end=0.6,0.7,0.8",
    )
    bench.add_argument(
        "--repeat", type=int, default=1, help="latency: run every utterance this many times"
    )
    bench.add_argument(
        "--local", action="store_true", help="soak: 30 turns on the real offline engines"
    )
    voices = sub.add_parser("voices", help="list the offline languages and voices")
    voices.add_argument("--language", help=LANG_HELP)
    sub.add_parser("gui", help="open the desktop app (the default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from assistant.logfile import log_to_console

    log_to_console(logging.INFO if args.verbose else logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Audio callbacks run on PortAudio's threads and need the GIL: a shorter switch interval
    # (default 5 ms) lets them in sooner while inference threads are busy.
    sys.setswitchinterval(AUDIO_SWITCH_INTERVAL)
    try:
        if args.command == "talk":
            return _talk(args)
        if args.command == "bench":
            from assistant.bench import run_bench

            return run_bench(
                args.which,
                turns=args.turns,
                quick=args.quick,
                compare=args.compare,
                ablate=args.ablate,
                curve=args.curve,
                repeat=args.repeat,
                local=args.local,
            )
        if args.command == "voices":
            return _voices(args.language)
        return _gui()
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> int:
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    print(f"parley: error: {first_line}", file=sys.stderr)
    return 1


def _talk(args: argparse.Namespace) -> int:
    from assistant.audio.wav import WavError
    from assistant.engines.base import EngineError
    from assistant.engines.registry import UnknownEngineError
    from assistant.events import AppEvent
    from assistant.talk import TalkError, describe_event, run_talk, write_timeline

    try:
        loaded = load_settings()
    except (OSError, SettingsError) as exc:
        return _fail(f"cannot read settings: {exc}")
    settings = loaded.settings
    if loaded.notice:
        print(f"parley: {loaded.notice}", file=sys.stderr)
    chained = [f"--{key}" for key in ("stt", "llm", "tts") if getattr(args, key)]
    if args.s2s and chained:
        return _fail(f"--s2s replaces {', '.join(chained)}: give one or the other")
    for key in ("stt", "llm", "tts", "language", "voice"):
        value = getattr(args, key)
        if value:
            setattr(settings, key, value)
    if args.s2s:
        settings.pipeline = "s2s"
        settings.s2s.engine = args.s2s
        if args.voice:
            settings.s2s.voice = args.voice
    elif chained:
        settings.pipeline = "chained"
    if args.turns:
        settings.turn_mode = args.turns
    if args.aec:
        settings.echo_cancellation = args.aec
    echo = None
    if args.echo is not None:
        from assistant.audio.room import EchoPath

        try:
            echo = EchoPath.parse(args.echo)
        except ValueError as exc:
            return _fail(str(exc))
        if args.pace != "realtime":
            return _fail("--echo needs --pace realtime: a room plays in real time")
    if not args.input.exists():
        return _fail(f"{args.input}: no such file")
    problem = _talk_tools(args, settings)
    if problem is not None:
        return _fail(problem)

    def show(event: AppEvent) -> None:
        line = describe_event(event)
        if line:
            print(line, flush=True)

    try:
        result = asyncio.run(
            run_talk(
                args.input,
                settings=settings,
                output_path=args.output,
                pace=args.pace,
                history_dir=args.history,
                on_event=show,
                echo=echo,
            )
        )
    except (WavError, EngineError, UnknownEngineError, TalkError, OSError) as exc:
        return _fail(str(exc))
    for notice in result.notices:
        print(f"note: {notice}", file=sys.stderr)
    if args.timeline is not None:
        write_timeline(args.timeline, result)
    if result.errors:
        return _fail(result.errors[0])
    if not result.turns:
        return _fail("no speech was recognized in the input")
    return 0


def _talk_tools(args: argparse.Namespace, settings: Settings) -> str | None:
    """Apply --tools, --mcp and --structured to ``settings``; a one-line problem, if any."""
    from assistant.tools.mcp import McpConfigError, load_servers
    from assistant.tools.structured import SchemaError, load_schema

    settings.tools.enabled = args.tools != "none"
    if args.mcp is not None:
        try:
            settings.tools.mcp_servers.update(load_servers(args.mcp))
        except McpConfigError as exc:
            return str(exc)
    if args.structured is not None:
        try:
            load_schema(args.structured)
        except SchemaError as exc:
            return str(exc)
        settings.structured.enabled = True
        settings.structured.schema_path = str(args.structured.resolve())
    return None


def _voices(language: str | None) -> int:
    try:
        from assistant.engines.local.voices import list_voices
    except ImportError as exc:
        return _fail(f"the offline voices are not installed ({exc})")
    voices = list_voices(language)
    if not voices:
        return _fail(f"no offline voice for language {language!r}")
    width = max(len(v.id) for v in voices)
    for v in voices:
        print(f"{v.id:<{width}}  {v.language:<8} {v.engine:<7} {v.sample_rate:>6} Hz  {v.name}")
    return 0


def _gui() -> int:
    try:
        from ui.app import run_app
    except ImportError:
        print(
            "parley: the desktop app is not installed here; use `parley talk --input IN.wav` "
            "for a headless conversation.",
            file=sys.stderr,
        )
        return 2
    return run_app()


if __name__ == "__main__":
    sys.exit(main())
