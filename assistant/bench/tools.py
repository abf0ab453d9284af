"""Tool choice and tool-turn latency: ``parley bench tools``.

A set of spoken requests — synthesized by the offline English voice, plus the real and eSpeak
recordings in the test data — goes through ``parley talk``'s path with the embedded engines
(local speech recognition, the 1.5B model with the tool router, local speech), one fresh
conversation per request. Requests that need a tool, that need none, and that need two are
mixed. It prints:

- right tool and arguments (requests that need tools), and no tool when none is needed;
- the time from the model request to the answer's first text handed to speech on tool turns
  (routing + tool + answer) and on turns without a tool, p50/p90, and the routing call alone;
- the same tool-turn figures with a cloud model: the OpenAI adapter against the local fake
  OpenAI server (from the test suite; run from a checkout), which answers with a tool call;
- the first routing decision for the same requests a few turns into a conversation (typed
  after earlier exchanges, text only): the router alone, and after the check that a chosen
  call fits the request's words (``ToolRegistry.plausible``), as a reply makes it.

Tools that change something run without asking here (the benchmark measures the choice).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import Settings
from assistant.engines.base import Role
from assistant.history import TurnRecord
from assistant.tools import calculate

ROOT = Path(__file__).resolve().parents[2]
SPEECH = ROOT / "tests" / "data" / "speech"

Check = Callable[[dict[str, Any]], bool]


def _num(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def result_is(value: float) -> Check:
    """A ``calculate`` call whose expression evaluates to ``value``."""

    def check(args: dict[str, Any]) -> bool:
        try:
            got = float(calculate(str(args.get("expression", ""))))
        except (ValueError, ZeroDivisionError, SyntaxError, TypeError):
            return False
        return abs(got - value) <= 1e-6 * max(1.0, abs(value))

    return check


def converts(value: float, expected: float) -> Check:
    """A ``convert_units`` call of ``value`` whose result is ``expected`` (±2 %)."""

    def check(args: dict[str, Any]) -> bool:
        from assistant.tools.units import convert_units

        if _num(args.get("value")) != value:
            return False
        try:
            text = convert_units(value, str(args["from_unit"]), str(args["to_unit"]))
        except (ValueError, KeyError):
            return False
        got = _num(text.split("=")[1].split()[0].replace(",", ""))
        return got is not None and abs(got - expected) <= 0.02 * abs(expected)

    return check


def seconds_are(value: float) -> Check:
    return lambda args: _num(args.get("seconds")) == value


def mentions(key: str, *words: str) -> Check:
    return lambda args: all(w in str(args.get(key, "")).lower() for w in words)


def reminder(word: str, hour: int | None = None, minutes: float | None = None) -> Check:
    def check(args: dict[str, Any]) -> bool:
        if word not in str(args.get("text", "")).lower():
            return False
        if minutes is not None:
            return _num(args.get("in_minutes")) == minutes
        if hour is not None:
            import datetime as dt

            from assistant.tools.alarms import parse_time_of_day

            try:
                when = parse_time_of_day(str(args.get("at", "")), dt.datetime.now().astimezone())
            except ValueError:
                return False
            return when.hour == hour
        return True

    return check


def anything(_args: dict[str, Any]) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Request:
    text: str
    #: The calls a right answer makes, in any order (empty: no tool).
    expected: tuple[tuple[str, Check], ...] = ()
    language: str = "en"
    #: A recording in tests/data/speech instead of a synthesized voice.
    recording: str = ""


def _calc(text: str, value: float) -> Request:
    return Request(text, (("calculate", result_is(value)),))


REQUESTS: tuple[Request, ...] = (
    _calc("What is seventeen times twenty-three?", 391),
    _calc("How much is twelve plus forty-five?", 57),
    _calc("What's one hundred divided by eight?", 12.5),
    _calc("Calculate fifteen percent of eighty.", 12),
    _calc("What is the square root of one hundred forty-four?", 12),
    _calc("What is nine hundred minus three hundred seventy-five?", 525),
    _calc("Multiply two hundred and fifty by four.", 1000),
    _calc("What is two to the power of ten?", 1024),
    Request("What time is it?", (("get_time", anything),)),
    Request("What's today's date?", (("get_time", anything),)),
    Request("What day of the week is it today?", (("get_time", anything),)),
    Request("Can you tell me the current time?", (("get_time", anything),)),
    Request("Convert ten miles to kilometers.", (("convert_units", converts(10, 16.09)),)),
    Request("How many pounds is five kilograms?", (("convert_units", converts(5, 11.02)),)),
    Request(
        "What is seventy degrees Fahrenheit in Celsius?",
        (("convert_units", converts(70, 21.11)),),
    ),
    Request("How many ounces are in two pounds?", (("convert_units", converts(2, 32)),)),
    Request("Convert three feet to centimeters.", (("convert_units", converts(3, 91.44)),)),
    Request("How many liters are in two gallons?", (("convert_units", converts(2, 7.571)),)),
    Request("Set a timer for five minutes.", (("set_timer", seconds_are(300)),)),
    Request("Start a timer for thirty seconds.", (("set_timer", seconds_are(30)),)),
    Request("Set a ten minute timer for the pasta.", (("set_timer", seconds_are(600)),)),
    Request("Remind me to call my mother at six pm.", (("set_reminder", reminder("mother", 18)),)),
    Request(
        "Remind me in twenty minutes to check the oven.",
        (("set_reminder", reminder("oven", minutes=20)),),
    ),
    Request("Take a note: buy milk and eggs.", (("add_note", mentions("text", "milk")),)),
    Request("Note that the spare key is under the mat.", (("add_note", mentions("text", "key")),)),
    Request("What did I write down about milk?", (("find_notes", mentions("query", "milk")),)),
    Request("Do I have a note about the key?", (("find_notes", mentions("query", "key")),)),
    Request("Which timers are running?", (("list_timers", anything),)),
    # Two steps.
    Request(
        "What is twelve times twelve, and what time is it?",
        (("calculate", result_is(144)), ("get_time", anything)),
    ),
    Request(
        "Convert five miles to kilometers and set a timer for two minutes.",
        (("convert_units", converts(5, 8.047)), ("set_timer", seconds_are(120))),
    ),
    Request(
        "Set a timer for ten minutes and turn off the kitchen lights.",
        (("set_timer", seconds_are(600)),),
        recording="espeak_en_timer.wav",
    ),
    # No tool.
    Request("What is the capital of France?"),
    Request("Tell me a joke about cats."),
    Request("Who wrote Romeo and Juliet?"),
    Request("How do I boil an egg?"),
    Request("What is a good name for a dog?"),
    Request("Give me one tip for sleeping better."),
    Request("Why is the sky blue?"),
    Request("Thank you, that's all."),
    Request("How are you today?"),
    Request("Tell me something interesting about the moon."),
    Request("What is photosynthesis?"),
    Request("Can you recommend a good book?"),
    Request("he was not an ill disposed young man", recording="librivox_austen_0880.wav"),
    Request(
        "unless to be rather cold hearted and rather selfish is to be ill disposed",
        recording="librivox_austen_0890.wav",
    ),
    Request("go forward ten meters", recording="cmu_go_forward.wav"),
    Request("go somewhere and do something", recording="cmu_something.wav"),
    # Knowledge with numbers in the answer: the embedded router has taken these for sums.
    Request("How many legs does a spider have?"),
    Request("How far away is the moon?"),
    Request("How many days are in a leap year?"),
    Request("What is the tallest mountain in the world?"),
)
#: A small subset for ``--quick``: some of each kind.
QUICK = (0, 8, 12, 18, 28, 31, 32, 44)


@dataclass(slots=True)
class Outcome:
    request: Request
    turn: TurnRecord | None
    heard: str = ""
    error: str = ""

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for call in self.turn.tool_calls if self.turn else []:
            try:
                args = json.loads(call.arguments or "{}")
            except ValueError:
                args = {}
            out.append((call.name, args if isinstance(args, dict) else {}))
        return out

    @property
    def right(self) -> bool:
        calls = self.calls
        if not self.request.expected:
            return not calls
        return all(
            any(name == tool and check(args) for name, args in calls)
            for tool, check in self.request.expected
        )

    def _marks(self) -> dict[str, float]:
        return self.turn.timeline.get("marks_ms", {}) if self.turn else {}

    @property
    def to_answer_ms(self) -> float | None:
        """Model request → the answer's first text handed to speech (routing, tools included)."""
        marks = self._marks()
        if "llm_request" in marks and "first_text_to_tts" in marks:
            return float(marks["first_text_to_tts"] - marks["llm_request"])
        return None

    def _notes(self) -> dict[str, Any]:
        return self.turn.timeline.get("notes", {}) if self.turn else {}

    @property
    def router_ms(self) -> list[float]:
        value = self._notes().get("router_ms", [])
        return [float(v) for v in value] if isinstance(value, list) else []

    @property
    def reasked(self) -> bool:
        """The answer began with a written-out decision and was asked again."""
        return self._notes().get("answer_reasked") is True


@dataclass(slots=True)
class Figures:
    outcomes: list[Outcome] = field(default_factory=list)

    def percent(self, needs_tool: bool) -> tuple[int, int]:
        chosen = [o for o in self.outcomes if bool(o.request.expected) == needs_tool]
        return sum(o.right for o in chosen), len(chosen)


def _p(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _line(label: str, values: Sequence[float]) -> str:
    if not values:
        return f"  {label:<44} (no turns)"
    p50, p90 = _p(values, 0.5), _p(values, 0.9)
    return f"  {label:<44} p50 {p50:7.0f} ms   p90 {p90:7.0f} ms   n={len(values)}"


# ------------------------------------------------------------------------------- audio


async def synthesize(requests: Sequence[Request], directory: Path) -> list[Path]:
    """Each request as a 16 kHz WAV: its recording, or the offline English voice."""
    from assistant.audio.wav import resample, write_wav
    from assistant.engines.local.tts import LocalTTS

    tts = LocalTTS()
    out = []
    try:
        for i, request in enumerate(requests):
            if request.recording:
                out.append(SPEECH / request.recording)
                continue

            async def one(text: str = request.text) -> AsyncIterator[str]:
                yield text

            chunks = [c async for c in tts.stream(one(), voice=None, language=request.language)]
            pcm = resample(np.concatenate([c.pcm for c in chunks]), chunks[0].sample_rate, 16_000)
            silence = np.zeros(int(0.4 * 16_000), np.int16)
            path = directory / f"request-{i:02d}.wav"
            write_wav(path, np.concatenate([silence, pcm, silence]), 16_000)
            out.append(path)
    finally:
        tts.close()
    return out


# ------------------------------------------------------------------------------- runs


def _settings() -> Settings:
    settings = Settings()
    settings.turn_mode = "ptt"
    settings.tools.confirm = "never"
    settings.tools.mcp_servers = {}
    return settings


async def run_local(
    requests: Sequence[Request], directory: Path, log: Callable[[str], None]
) -> Figures:
    from assistant.app.engines import close_engine
    from assistant.engines.local.factories import make_llm, make_stt, make_tts
    from assistant.talk import run_talk

    wavs = await synthesize(requests, directory)
    settings = _settings()
    stt, llm, tts = make_stt(settings), make_llm(settings), make_tts(settings)
    await asyncio.gather(stt.warm_up(), llm.warm_up(), tts.warm_up())
    figures = Figures()
    try:
        for i, (request, wav) in enumerate(zip(requests, wavs, strict=True)):
            with tempfile.TemporaryDirectory(prefix="parley-bench-tools-") as history:
                try:
                    result = await run_talk(
                        wav,
                        settings=_settings(),
                        pace="fast",
                        engines=(stt, llm, tts),
                        history_dir=Path(history),
                        idle_timeout=600,
                    )
                    turn = result.turns[0] if result.turns else None
                    outcome = Outcome(request, turn, turn.user_text if turn else "")
                    if result.errors:
                        outcome.error = result.errors[0]
                except Exception as exc:
                    outcome = Outcome(request, None, error=str(exc))
            figures.outcomes.append(outcome)
            mark = "ok " if outcome.right else "BAD"
            calls = ", ".join(f"{n}{json.dumps(a)}" for n, a in outcome.calls) or "no tool"
            log(f"{mark} [{i + 1}/{len(requests)}] {outcome.heard or request.text!r} -> {calls}")
    finally:
        for engine in (stt, llm, tts):
            await close_engine(engine)
    return figures


async def run_cloud(turns: int, directory: Path) -> Figures | None:
    """Tool turns and plain turns with the OpenAI adapter against the local fake server."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        from tests.fakes.openai_server import FakeOpenAIServer
    except ImportError:
        return None
    from assistant.engines.fake import FakeSTT, FakeTTS
    from assistant.engines.openai.chat import OpenAIChatLLM
    from assistant.talk import run_talk

    sample = ROOT / "resources" / "samples" / "question.wav"
    server = FakeOpenAIServer().start()
    figures = Figures()
    try:
        llm = OpenAIChatLLM(server.http_url, "sk-bench", "gpt-bench")
        for i in range(2 * turns):
            with_tool = i % 2 == 0
            server.chat_tool_call = ("calculate", '{"expression": "17*23"}') if with_tool else None
            engines = (FakeSTT(script=("What is seventeen times twenty-three?",)), llm, FakeTTS())
            with tempfile.TemporaryDirectory(prefix="parley-bench-cloud-") as history:
                result = await run_talk(
                    sample, settings=_settings(), pace="fast", engines=engines,
                    history_dir=Path(history),
                )  # fmt: skip
            expected = (("calculate", result_is(391)),) if with_tool else ()
            turn = result.turns[0] if result.turns else None
            figures.outcomes.append(Outcome(Request("cloud", expected), turn))
        await llm.aclose()
    finally:
        await asyncio.to_thread(server.stop)
    return figures


#: Earlier exchanges a request is asked after, in the conversation section.
CONVERSATIONS: tuple[tuple[tuple[Role, str], ...], ...] = (
    (("user", "What is the capital of France?"), ("assistant", "The capital of France is Paris.")),
    (
        ("user", "Tell me a joke."),
        ("assistant", "Why did the scarecrow win an award? He was outstanding in his field."),
        ("user", "Who wrote Hamlet?"),
        ("assistant", "William Shakespeare wrote Hamlet."),
    ),
    (("user", "What is twelve times nine?"), ("assistant", "Twelve times nine is 108.")),
)  # fmt: skip


@dataclass(slots=True)
class Routing:
    """First routing decisions in a conversation: (request, decision, kept after the check)."""

    decisions: list[tuple[Request, str | None, bool]] = field(default_factory=list)

    def right(self, *, checked: bool) -> tuple[int, int]:
        good = 0
        for request, tool, plausible in self.decisions:
            chosen = tool if (plausible or not checked) else None
            wanted = {name for name, _check in request.expected}
            good += chosen in wanted if wanted else chosen is None
        return good, len(self.decisions)


async def run_conversations(
    requests: Sequence[Request], log: Callable[[str], None], *, contexts: int
) -> Routing:
    """Each request typed after each of the first ``contexts`` earlier conversations; the
    reply's first routing decision and whether the reply would keep it."""
    from assistant.app.engines import close_engine
    from assistant.engines.base import Message
    from assistant.engines.local.factories import make_llm
    from assistant.prompt import system_prompt
    from assistant.session.generate import request_words
    from assistant.tools.router import route, with_tools_block

    settings = _settings()
    llm = make_llm(settings)
    await llm.warm_up()
    routing = Routing()
    try:
        with tempfile.TemporaryDirectory(prefix="parley-bench-tools-") as directory:
            tools = _product_tools(Path(directory))
            system = Message("system", system_prompt(settings.system_prompt, "en"))
            for earlier in CONVERSATIONS[:contexts]:
                for request in requests:
                    asked = [system, *(Message(r, t) for r, t in earlier)]
                    history = with_tools_block([*asked, Message("user", request.text)], tools.specs)
                    choice = await route(llm, history, tools.specs)
                    plausible = choice.tool is None or tools.plausible(
                        choice.tool, choice.arguments, request_words(history)
                    )
                    routing.decisions.append((request, choice.tool, plausible))
                    kept = choice.tool if plausible else f"{choice.tool} (not plausible: dropped)"
                    log(f"in a conversation: {request.text!r} -> {kept or 'no tool'}")
    finally:
        await close_engine(llm)
    return routing


def _product_tools(directory: Path) -> Any:
    """The tools the app offers by default, their files in ``directory``."""
    from assistant.app.tools import NOTES_FILE, TIMERS_FILE, default_registry
    from assistant.tools.alarms import AlarmBook
    from assistant.tools.notes import NoteBook

    return default_registry(AlarmBook(directory / TIMERS_FILE), NoteBook(directory / NOTES_FILE))


# ------------------------------------------------------------------------------- report


def report(
    local: Figures | None, cloud: Figures | None, conversation: Routing | None = None
) -> list[str]:
    lines: list[str] = []
    if local is not None:
        right, total = local.percent(needs_tool=True)
        plain_right, plain_total = local.percent(needs_tool=False)
        lines.append("Tool choice — embedded engines (local STT, 1.5B model + router, local TTS)")
        if total:
            share = 100 * right / total
            lines.append(f"  right tool and arguments     {right}/{total}  {share:5.1f} %")
        if plain_total:
            lines.append(
                f"  no tool when none is needed  {plain_right}/{plain_total}  "
                f"{100 * plain_right / plain_total:5.1f} %"
            )
        failed = [o for o in local.outcomes if o.error]
        if failed:
            lines.append(f"  turns that failed: {len(failed)} (first: {failed[0].error})")
        lines += _latency("embedded", local)
    if cloud is not None:
        lines += _latency("cloud (OpenAI adapter → local fake OpenAI server)", cloud)
    elif local is not None:
        lines.append(
            "cloud: skipped (the fake OpenAI server comes with the test suite: run from a checkout)"
        )
    if conversation is not None and conversation.decisions:
        alone, total = conversation.right(checked=False)
        checked, _ = conversation.right(checked=True)
        lines.append("Tool choice a few turns into a conversation (typed; the first decision)")
        for label, right in (("router alone", alone), ("with the plausibility check", checked)):
            lines.append(f"  right tool, {label:<28} {right}/{total}  {100 * right / total:5.1f} %")
    return lines


def _latency(title: str, figures: Figures) -> list[str]:
    tool = [o for o in figures.outcomes if o.calls]
    plain = [o for o in figures.outcomes if not o.calls and o.turn is not None]
    tool_ms = [v for o in tool if (v := o.to_answer_ms) is not None]
    plain_ms = [v for o in plain if (v := o.to_answer_ms) is not None]
    lines = [f"Latency — {title}: model request → first answer text to speech"]
    lines.append(_line("tool turns (routing + tool + answer)", tool_ms))
    lines.append(_line("turns without a tool", plain_ms))
    if tool_ms and plain_ms:
        added = statistics.median(tool_ms) - statistics.median(plain_ms)
        lines.append(f"  {'a tool turn adds (difference of medians)':<44} {added:7.0f} ms")
    routing = [v for o in figures.outcomes for v in o.router_ms]
    if routing:
        lines.append(_line("one routing call", routing))
    tool_run = [c.ms for o in tool if o.turn for c in o.turn.tool_calls if c.ms is not None]
    if tool_run:
        lines.append(_line("the tools themselves", tool_run))
    answered = [o for o in figures.outcomes if o.turn is not None]
    reasked = sum(o.reasked for o in answered)
    lines.append(f"  {'answers asked a second time':<44} {reasked}/{len(answered)}")
    lines.append(_line("voice-to-voice, tool turns", _v2v(tool)))
    lines.append(_line("voice-to-voice, turns without a tool", _v2v(plain)))
    return lines


def _v2v(outcomes: list[Outcome]) -> list[float]:
    values = (o.turn.timeline.get("voice_to_voice_ms") for o in outcomes if o.turn is not None)
    return [float(v) for v in values if isinstance(v, int | float)]


def main(*, quick: bool = False, cloud_only: bool = False) -> int:
    requests = [REQUESTS[i] for i in QUICK] if quick else list(REQUESTS)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    async def run() -> tuple[Figures | None, Figures | None, Routing | None]:
        with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
            started = time.monotonic()
            local = None if cloud_only else await run_local(requests, Path(tmp), log)
            cloud = await run_cloud(10 if quick else 30, Path(tmp))
            contexts = 1 if quick else len(CONVERSATIONS)
            conversation = (
                None if cloud_only else await run_conversations(requests, log, contexts=contexts)
            )
            log(f"done in {time.monotonic() - started:.0f} s")
            return local, cloud, conversation

    local, cloud, conversation = asyncio.run(run())
    for line in report(local, cloud, conversation):
        print(line)
    return 0
