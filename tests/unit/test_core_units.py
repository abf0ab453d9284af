"""Unit tests of the core pieces: timeline, config, history, turns, fallback, spoken text."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from assistant.audio.frames import FRAME_SAMPLES, AudioFrame
from assistant.config import (
    InterruptionSettings,
    McpServerSettings,
    ProviderSettings,
    PushToTalkSettings,
    Settings,
    VadSettings,
    load_settings,
    save_settings,
    settings_path,
    settings_to_dict,
)
from assistant.engines.base import EngineError, EngineNotice, FellBack, Message, SpeechChunk
from assistant.engines.fake import FakeLLM, FakeSTT, FakeTTS
from assistant.engines.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from assistant.history import HistoryStore, ToolRecord, TurnRecord
from assistant.spoken import SpokenText
from assistant.timeline import Budgets, Timeline, TimelineSnapshot
from assistant.tools import calculate, default_tools
from assistant.turns import FRAME_SECONDS, PushToTalk, VadEndpointing
from assistant.turns.words import (
    Interjection,
    classify_interjection,
    not_said,
    only_sign_offs,
    trails_off,
)
from assistant.types import AudioLook

# ----------------------------------------------------------------------------------- timeline


def test_timeline_relative_marks_and_budgets() -> None:
    t = Timeline(1)
    base = 100.0
    for name, dt in [
        ("speech_start", -1.5),
        ("speech_end", 0),
        ("stt_final", 0.35),
        ("llm_request", 0.36),
        ("llm_first_token", 0.6),
        ("first_text_to_tts", 0.7),
        ("tts_first_audio", 0.95),
        ("playback_start", 0.97),
    ]:
        t.mark(name, base + dt)
    t.mark("speech_end", base + 5)  # a second call keeps the first time
    data = t.to_dict(Budgets())
    assert data["marks_ms"]["speech_end"] == 0
    assert data["marks_ms"]["speech_start"] == pytest.approx(-1500)
    assert data["voice_to_voice_ms"] == pytest.approx(970)
    # STT 350 > 300 budget, TTS 250 > 200, and voice-to-voice 970 > 800.
    assert data["over_budget"] == ["stt_final", "tts_first_audio", "voice_to_voice"]
    with pytest.raises(ValueError):
        t.mark("bogus")


# ------------------------------------------------------------------------------------- config


def test_settings_round_trip_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(language="de", turn_mode="vad", vad=VadSettings(end_silence_ms=450))
    s.providers["deepgram"] = s.provider("deepgram")
    s.providers["deepgram"].url = "ws://127.0.0.1:9/v1/listen"
    save_settings(s)
    loaded = load_settings()
    assert loaded.notice is None
    assert loaded.settings == s
    assert loaded.settings.endpoint("deepgram") == "ws://127.0.0.1:9/v1/listen"
    monkeypatch.setenv("PARLEY_DEEPGRAM_URL", "ws://localhost:1234/v1/listen")
    assert loaded.settings.endpoint("deepgram") == "ws://localhost:1234/v1/listen"
    assert loaded.settings.endpoint("openai") == "https://api.openai.com/v1"
    monkeypatch.setenv("PARLEY_OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    assert loaded.settings.endpoint("openai") == "http://127.0.0.1:8080/v1"


def test_the_settings_file_holds_only_what_differs_from_the_defaults() -> None:
    s = Settings(language="de", vad=VadSettings(end_silence_ms=450))
    s.providers["deepgram"] = s.provider("deepgram")
    s.providers["deepgram"].model = "nova-3"
    s.tools.mcp_servers["files"] = McpServerSettings(command="mcp-files", timeout=5.0)
    save_settings(s)
    assert tomllib.loads(settings_path().read_text()) == {
        "language": "de",
        "vad": {"end_silence_ms": 450},
        "providers": {"deepgram": {"model": "nova-3"}},
        "tools": {"mcp_servers": {"files": {"command": "mcp-files", "timeout": 5.0}}},
    }
    assert load_settings().settings == s
    save_settings(Settings())
    assert load_settings().settings == Settings()
    assert tomllib.loads(settings_path().read_text()) == {}


def test_a_chosen_value_equal_to_a_retuned_default_is_kept() -> None:
    s = Settings(interruption=InterruptionSettings(over_reply_level_dbfs=-55.0))
    save_settings(s)
    assert load_settings().settings == s


def test_a_file_of_every_value_takes_a_retuned_default_and_keeps_a_chosen_value() -> None:
    # Files used to hold every value: the old default there is no choice of the user's.
    path = settings_path()
    path.parent.mkdir(parents=True)
    written = settings_to_dict(Settings())
    written["interruption"]["over_reply_level_dbfs"] = -55.0
    path.write_text(tomli_w.dumps(written))
    loaded = load_settings()
    assert loaded.notice is None
    assert loaded.settings.interruption == InterruptionSettings()
    assert loaded.settings.interruption.over_reply_level_dbfs != -55.0
    written["interruption"]["over_reply_level_dbfs"] = -48.0
    path.write_text(tomli_w.dumps(written))
    assert load_settings().settings.interruption.over_reply_level_dbfs == -48.0


@pytest.mark.parametrize(
    "content",
    [
        "this is [not toml",
        'turn_mode = "walkie-talkie"',
        "language = 3",
        'mystery = "x"',
        "vad = " + "[" * 5000 + "]" * 5000,  # deeper than the TOML parser's recursion limit
        "vad = " + "{a = " * 5000 + "1" + "}" * 5000,
        'turn_mode = "' + "x" * 100_000 + '"',  # a huge value, kept out of the notice
    ],
    ids=["syntax", "choice", "type", "unknown", "deep-arrays", "deep-tables", "huge-value"],
)
def test_invalid_settings_file_is_kept_aside(content: str) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True)
    path.write_text(content)
    loaded = load_settings()
    assert loaded.settings == Settings()
    assert loaded.notice and "kept as settings.toml.invalid-" in loaded.notice
    aside = list(path.parent.glob("settings.toml.invalid-*"))
    assert len(aside) == 1 and aside[0].read_text() == content
    assert not path.exists()
    assert "\n" not in loaded.notice and len(loaded.notice) < 400


def test_two_invalid_settings_files_in_one_second_are_both_kept() -> None:
    path = settings_path()
    path.parent.mkdir(parents=True)
    for content in ("first = [", "second = ["):
        path.write_text(content)
        assert load_settings().notice
    kept = sorted(p.read_text() for p in path.parent.glob("settings.toml.invalid-*"))
    assert kept == ["first = [", "second = ["]


def test_unreadable_settings_file_gives_defaults_and_a_notice() -> None:
    path = settings_path()
    path.mkdir(parents=True)  # a directory where the file should be
    loaded = load_settings()
    assert loaded.settings == Settings()
    assert loaded.notice and "could not be read" in loaded.notice
    assert path.is_dir()  # left where it is


def test_settings_file_has_no_secrets_fields() -> None:
    s = Settings(stt="deepgram", llm="openai", tts="elevenlabs")
    for name in ("deepgram", "openai", "elevenlabs", "anthropic"):
        s.providers[name] = ProviderSettings(url=f"https://{name}.example", model="m", voice="v")
    s.tools.mcp_servers["notes"] = McpServerSettings(command="notes", env={"HOME": "${HOME}"})
    save_settings(s)
    text = settings_path().read_text()
    assert "key" not in text.lower().replace("hotkey", "")


# ------------------------------------------------------------------------------------ history


def _turn(i: int, text: str = "hi") -> TurnRecord:
    return TurnRecord(turn_id=i, user_text=f"{text} {i}", assistant_text=f"answer {i}")


def test_history_appends_durably_and_reloads(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path)
    conv, report = store.latest()
    assert report.notice is None
    conv.append(_turn(1))
    conv.append(
        TurnRecord(
            2,
            "calc",
            "It is 4.",
            tool_calls=[ToolRecord("c1", "calculate", '{"expression":"2+2"}', "4")],
        )
    )
    again, _ = HistoryStore(tmp_path).latest()
    assert [t.turn_id for t in again.turns] == [1, 2]
    assert again.turns[1].tool_calls[0].result == "4"
    assert again.next_turn_id == 3


def test_half_written_history_is_recovered_not_discarded(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path)
    conv, _ = store.latest()
    conv.append(_turn(1))
    conv.append(_turn(2))
    with open(conv.path, "a") as f:
        f.write('{"type": "turn", "turn_id": 3, "user_te')  # a crash mid-write
    original = conv.path.read_bytes()
    again, report = HistoryStore(tmp_path).load(conv.path)
    assert [t.turn_id for t in again.turns] == [1, 2]
    assert report.recovered_lines == 1
    assert report.notice and "kept as" in report.notice
    assert report.kept_as is not None and report.kept_as.read_bytes() == original
    again.append(_turn(3))  # appends stay valid after recovery
    third, report3 = HistoryStore(tmp_path).load(conv.path)
    assert [t.turn_id for t in third.turns] == [1, 2, 3]
    assert report3.notice is None


def test_context_keeps_system_prompt_and_fits_budget(tmp_path: Path) -> None:
    conv, _ = HistoryStore(tmp_path).latest()
    for i in range(1, 60):
        conv.append(_turn(i, "a fairly long question about many different things " * 3))
    msgs = conv.context("SYSTEM", token_budget=400, pending_user="latest?")
    assert msgs[0] == Message("system", "SYSTEM")
    assert msgs[-1] == Message("user", "latest?")
    assert len(msgs) < 30
    # The kept turns are the most recent ones, whole and in order.
    users = [m.content for m in msgs if m.role == "user"][:-1]
    assert users[-1].endswith(" 59")
    numbers = [int(u.rsplit(" ", 1)[1]) for u in users]
    assert numbers == list(range(numbers[0], 60))


# -------------------------------------------------------------------------------------- turns


def _frame(t: float) -> AudioFrame:
    return AudioFrame(np.zeros(FRAME_SAMPLES, np.int16), t, t)


def test_vad_endpointing_start_end_and_hysteresis() -> None:
    vad = VadEndpointing(VadSettings(threshold=0.5, min_speech_ms=96, end_silence_ms=320))
    probs = [0.0] * 5 + [0.9] * 20 + [0.4] * 3 + [0.9] * 5 + [0.1] * 12
    events = []
    for i, p in enumerate(probs):
        ev = vad.process(_frame((i + 1) * FRAME_SECONDS), p)
        if ev:
            events.append((ev.kind, i, ev))
    kinds = [(k, i) for k, i, _ in events]
    # Start after 3 speech frames (96 ms); 0.4 stays inside speech (hysteresis); a speculative
    # pause after 7 silent frames (224 ms >= 200); end after 10 silent frames (320 ms).
    assert kinds == [("start", 7), ("pause", 39), ("end", 42)]
    start, pause, end = (e for _, _, e in events)
    assert pause.at == end.at
    assert start.at == pytest.approx(5 * FRAME_SECONDS)  # the first speech frame's start
    assert end.at == pytest.approx(33 * FRAME_SECONDS)  # the last speech frame's end
    assert end.detected_at - end.at == pytest.approx(10 * FRAME_SECONDS)


def test_vad_pause_then_resume_when_the_user_goes_on() -> None:
    vad = VadEndpointing(
        VadSettings(min_speech_ms=64, end_silence_ms=640, speculative_silence_ms=192)
    )
    probs = [0.9] * 10 + [0.0] * 8 + [0.9] + [0.0] + [0.9] * 2 + [0.9] * 5 + [0.0] * 25
    kinds = []
    for i, p in enumerate(probs):
        ev = vad.process(_frame((i + 1) * FRAME_SECONDS), p)
        if ev:
            kinds.append((ev.kind, i))
    # One speech frame after the pause is not enough; two in a row resume the turn, which then
    # pauses and ends again after the final silence.
    assert kinds == [("start", 1), ("pause", 15), ("resume", 21), ("pause", 32), ("end", 46)]


def test_vad_end_now_and_extended_silence() -> None:
    vad = VadEndpointing(
        VadSettings(min_speech_ms=64, end_silence_ms=320, speculative_silence_ms=96)
    )
    for i in range(6):
        vad.process(_frame((i + 1) * FRAME_SECONDS), 0.9)
    vad.extend_silence(2000)
    events = [vad.process(_frame((i + 7) * FRAME_SECONDS), 0.0) for i in range(20)]
    assert [e.kind for e in events if e] == ["pause"]  # 640 ms of silence, but 2 s are needed
    end = vad.end_now(10.0)
    assert end is not None and end.kind == "end" and end.at == pytest.approx(6 * FRAME_SECONDS)
    assert not vad.active


def test_vad_ignores_short_blips() -> None:
    vad = VadEndpointing(VadSettings(min_speech_ms=200))
    probs = ([0.9] * 2 + [0.0] * 10) * 5
    assert all(vad.process(_frame((i + 1) * FRAME_SECONDS), p) is None for i, p in enumerate(probs))


def _tone(t: float, dbfs: float) -> AudioFrame:
    """A frame of a 440 Hz tone at this RMS level."""
    n = np.arange(FRAME_SAMPLES)
    amplitude = 32768.0 * 10 ** (dbfs / 20) * np.sqrt(2)
    pcm = (amplitude * np.sin(2 * np.pi * 440 * n / 16_000)).astype(np.int16)
    return AudioFrame(pcm, t, t)


@pytest.mark.parametrize(
    ("probability", "dbfs", "over_reply", "starts"),
    [
        (0.6, -70.0, False, True),  # over the threshold: any level, reply or not
        (0.3, -30.0, False, False),  # unsure and nobody is being interrupted: not speech
        (0.3, -30.0, True, True),  # unsure but loud over the reply: the reply pauses at once
        (0.3, -62.0, True, False),  # unsure and as quiet as cancelled echo: not speech
        (0.1, -20.0, True, False),  # loud but not a voice (a door, a keyboard)
        (0.9, -58.0, True, False),  # sure, but as quiet as what is left of the echo
        (0.3, -47.0, True, False),  # unsure and no louder than the echo's residue at times
        (0.9, -47.0, True, True),  # sure, and above the floor: speech
        (0.9, -58.0, False, True),  # the same with nobody being interrupted: speech
    ],
)
def test_over_a_reply_a_loud_likely_voice_starts_a_turn_below_the_threshold(
    probability: float, dbfs: float, over_reply: bool, starts: bool
) -> None:
    vad = VadEndpointing(
        VadSettings(threshold=0.5, min_speech_ms=96),
        InterruptionSettings(
            pause_after_ms=32,
            over_reply_threshold=0.2,
            over_reply_level_dbfs=-42.0,
            over_reply_floor_dbfs=-52.0,
        ),
    )
    event = vad.process(_tone(FRAME_SECONDS, dbfs), probability, over_reply=over_reply)
    if not over_reply and starts:  # away from a reply a turn needs min_speech_ms of speech
        event = vad.process(_tone(2 * FRAME_SECONDS, dbfs), probability) or vad.process(
            _tone(3 * FRAME_SECONDS, dbfs), probability
        )
    assert (event is not None and event.kind == "start") is starts
    if starts:
        assert event is not None and event.at == pytest.approx(0.0)


def _over_reply_endpointing(pause_after_ms: int = 32) -> VadEndpointing:
    return VadEndpointing(
        VadSettings(threshold=0.5, min_speech_ms=96, end_silence_ms=320),
        InterruptionSettings(
            pause_after_ms=pause_after_ms,
            over_reply_threshold=0.2,
            over_reply_level_dbfs=-55.0,
            over_reply_floor_dbfs=-52.0,
        ),
    )


def _look(t: float, dbfs: float, fresh: int = 160) -> AudioLook:
    return AudioLook(_tone(t, dbfs).pcm, fresh, t)


def test_a_look_between_frames_over_a_reply_starts_the_turn_before_the_frame() -> None:
    vad = _over_reply_endpointing()
    assert vad.process(_tone(FRAME_SECONDS, -70.0), 0.0, over_reply=True) is None
    assert vad.look(_look(FRAME_SECONDS + 0.01, -40.0), 0.05) is None  # not a voice
    # Unsure, even loud: a frame would count it over a reply, a look does not (looks come three
    # times as often, and so would cancelled echo that scores this).
    assert vad.look(_look(FRAME_SECONDS + 0.01, -30.0), 0.3) is None
    # Sure, but as quiet as what is left of the echo now and then.
    assert vad.look(_look(FRAME_SECONDS + 0.015, -58.0), 0.9) is None
    assert not vad.active and not vad.candidate  # a look that is not speech leaves no trace
    event = vad.look(_look(FRAME_SECONDS + 0.02, -30.0), 0.6)
    assert event is not None and event.kind == "start"
    assert (event.at, event.detected_at) == pytest.approx((0.02, FRAME_SECONDS + 0.02))
    assert vad.active
    assert vad.look(_look(FRAME_SECONDS + 0.03, -30.0), 0.9) is None  # already started
    # The frame the look was in goes on as the turn's speech; silence ends the turn.
    assert vad.process(_tone(2 * FRAME_SECONDS, -30.0), 0.9, over_reply=True) is None
    kinds = [vad.process(_tone((3 + i) * FRAME_SECONDS, -70.0), 0.0) for i in range(10)]
    assert [e.kind for e in kinds if e] == ["pause", "end"]


def test_a_look_after_speech_frames_adds_only_its_fresh_samples() -> None:
    # 48 ms of speech needed over a reply: a look alone (32 ms) is not enough; after a frame of
    # speech, a look adds the samples that came after that frame, not its whole window.
    vad = _over_reply_endpointing(pause_after_ms=48)
    assert vad.look(_look(0.02, -30.0), 0.9) is None
    assert vad.process(_tone(FRAME_SECONDS, -30.0), 0.9, over_reply=True) is None
    assert vad.look(_look(FRAME_SECONDS + 0.01, -30.0, fresh=160), 0.9) is None  # 42 ms
    event = vad.look(_look(FRAME_SECONDS + 0.02, -30.0, fresh=320), 0.9)  # 52 ms
    assert event is not None and event.kind == "start"
    assert event.at == pytest.approx(0.0)  # when the first frame of speech began


def test_push_to_talk_does_not_look_between_frames() -> None:
    ptt = PushToTalk()
    ptt.press(0.0)
    assert ptt.look(_look(0.01, -20.0), 1.0) is None


def test_push_to_talk_ignores_auto_repeat() -> None:
    ptt = PushToTalk()
    assert ptt.press(1.0) is not None
    assert ptt.press(1.1) is None and ptt.press(1.2) is None
    end = ptt.release(2.0)
    assert end is not None and end.kind == "end" and end.at == 2.0
    assert ptt.release(2.1) is None


def test_push_to_talk_reports_pauses_while_the_key_is_held() -> None:
    ptt = PushToTalk(PushToTalkSettings(speculative_silence_ms=96), VadSettings(threshold=0.5))
    assert ptt.needs_vad
    assert ptt.process(_frame(0.5), 0.9) is None  # the key is up: frames decide nothing
    ptt.press(1.0)
    t = iter((i + 1) * FRAME_SECONDS + 1.0 for i in range(100))

    def run(*probs: float) -> list[tuple[str, float]]:
        return [(e.kind, e.at) for p in probs if (e := ptt.process(_frame(next(t)), p))]

    assert run(0.0, 0.9) == []  # one speech frame (a click) is not words
    assert run(0.0, 0.0, 0.0, 0.0) == []
    assert run(0.9, 0.9, 0.4, 0.9) == []  # a dip just below the threshold stays speech
    speech_end = 1.0 + 10 * FRAME_SECONDS
    assert run(0.0, 0.0, 0.0) == [("key_pause", pytest.approx(speech_end))]
    assert run(0.9, 0.0, 0.0, 0.0) == []  # one frame of speech does not end the pause
    assert run(0.9, 0.9) == [("key_resume", pytest.approx(1.0 + 17 * FRAME_SECONDS))]
    assert run(0.0, 0.0, 0.0) == [("key_pause", pytest.approx(1.0 + 19 * FRAME_SECONDS))]
    end = ptt.release(3.0)
    assert end is not None and end.kind == "end"
    assert ptt.process(_frame(3.1), 0.9) is None
    off = PushToTalk(PushToTalkSettings(speculative_silence_ms=0))
    assert not off.needs_vad


def test_interjections_are_told_apart_in_each_language() -> None:
    c = classify_interjection
    assert c("") is Interjection.NOTHING and c("[cough]") is Interjection.WORDS
    for text in ("Mhm.", "uh-huh, hmm", "Uh-uh.", "Yeah.", "Right, okay.", "Mm-hmm"):
        assert c(text) is Interjection.BACKCHANNEL, text
    assert c("Ja, genau.", "de") is Interjection.BACKCHANNEL
    assert c("Ouais, d'accord.", "fr") is Interjection.BACKCHANNEL
    assert c("Sí, claro.", "es") is Interjection.BACKCHANNEL
    assert c("Sì, certo.", "it") is Interjection.BACKCHANNEL
    for text, lang in [
        ("Stop!", "en"),
        ("Wait.", "en"),
        ("hold on", "en"),
        ("Halt!", "de"),
        ("Attends !", "fr"),
        ("¡Para!", "es"),
        ("Aspetta.", "it"),
    ]:
        assert c(text, lang) is Interjection.STOP, text
    assert c("wait, what about the dragons", "en") is Interjection.WORDS
    assert c("mhm stop please") is Interjection.STOP
    assert c("Tell me more about that.") is Interjection.WORDS


def test_unfinished_sentences_are_told_by_their_last_word() -> None:
    assert trails_off("I'd like to book a table for")
    assert trails_off("and the") and trails_off("what about um") and trails_off("so, ...")
    assert not trails_off("Who is it for?")
    assert not trails_off("What is the weather in Paris?")
    assert not trails_off("Turn the lights on.")
    assert trails_off("Ich möchte einen Tisch für", "de")
    assert trails_off("Je voudrais réserver une table pour", "fr")
    assert trails_off("Quisiera reservar una mesa para", "es")
    assert not trails_off("Quisiera reservar una mesa.", "es")


def test_recognizer_sign_offs_are_told_from_words() -> None:
    assert only_sign_offs("Thank you.")
    assert only_sign_offs("Thank you. Thank you.")
    assert only_sign_offs("Thanks for watching!")
    assert only_sign_offs("Subtitles by the Amara.org community")
    assert only_sign_offs("Vielen Dank.", "de") and only_sign_offs("Merci d’avoir regardé !", "fr")
    assert only_sign_offs("Thank you.", "de")  # English is always understood
    assert not only_sign_offs("")
    assert not only_sign_offs("Thank you, but what about Rome?")
    assert not only_sign_offs("Vielen Dank.", "en")  # another language's, unasked
    assert not only_sign_offs("Tell me more")


def test_an_echo_of_the_assistants_words_misheard_is_still_its_own() -> None:
    said = "The capital of France is Paris. Paris is a city with numerous restaurants."
    # What a recognizer made of the assistant's voice coming back through the microphone.
    assert not_said("Harris", said) == ""
    assert not_said("Francis of Paris.", said) == ""  # "France is", run together
    assert not_said("and just payers", said) == "and just"
    assert not_said("Café, Paris!", "cafe paris") == ""  # accents do not matter
    # The user's own words stay theirs, short ones included ("what" is not "that").
    assert not_said("What about Rome?", "that is about Paris") == "what rome"
    assert not_said("Please tell me about the weather instead", said) == (
        "please tell me about weather instead"
    )
    assert not_said("anything at all", "") == "anything at all"


# ----------------------------------------------------------------------------------- fallback


async def test_fallback_llm_moves_on_only_before_output() -> None:
    reports: list[EngineNotice] = []
    chain = FallbackLLM(
        [
            FakeLLM(ttft=0, fail_before_first_token=EngineError("down"), name="a"),
            FakeLLM(ttft=0, name="b"),
        ]
    )
    chain.notices.subscribe(reports.append)
    from assistant.engines.base import ChatRequest, TextDelta

    out = [e async for e in chain.stream(ChatRequest([Message("user", "hi")]))]
    assert any(isinstance(e, TextDelta) for e in out)
    assert reports == [FellBack("llm", "a", "b", "down")]
    await chain.aclose()

    mid = FallbackLLM([FakeLLM(ttft=0, fail_after_tokens=2, name="a"), FakeLLM(ttft=0, name="b")])
    mid_reports: list[EngineNotice] = []
    mid.notices.subscribe(mid_reports.append)
    with pytest.raises(EngineError, match="mid-reply"):
        [e async for e in mid.stream(ChatRequest([Message("user", "hi")]))]
    # What was said stands; the next reply comes from the engine that works.
    assert mid_reports == [FellBack("llm", "a", "b", "the fake language model failed mid-reply")]
    again = [e async for e in mid.stream(ChatRequest([Message("user", "hi")]))]
    assert any(isinstance(e, TextDelta) for e in again)
    await mid.aclose()


async def test_fallback_llm_a_usage_report_is_not_an_answer() -> None:
    from assistant.engines.base import ChatRequest, TextDelta, Usage

    class Empty(FakeLLM):
        async def stream(self, request: ChatRequest) -> Any:  # type: ignore[override]
            yield Usage(prompt_tokens=3)
            raise EngineError("the answer was unreadable", engine="a")

    chain = FallbackLLM([Empty(ttft=0, name="a"), FakeLLM(ttft=0, name="b")])
    out = [e async for e in chain.stream(ChatRequest([Message("user", "hi")]))]
    assert any(isinstance(e, TextDelta) for e in out)  # the second engine answered
    await chain.aclose()


async def test_fallback_tts_replays_pieces_taken_by_the_failed_engine() -> None:
    failing = FakeTTS(first_audio_delay=0, realtime_factor=0, fail_after_chunks=0, name="a")
    chain = FallbackTTS([failing, FakeTTS(first_audio_delay=0, realtime_factor=0, name="b")])

    async def pieces():
        for p in ("First piece.", "Second piece."):
            yield p

    chunks = [c async for c in chain.stream(pieces(), voice=None, language="en")]
    await chain.aclose()
    assert sorted({(c.piece, c.text) for c in chunks}) == [
        (0, "First piece."),
        (1, "Second piece."),
    ]


async def test_fallback_stt_reports_and_uses_next() -> None:
    reports: list[EngineNotice] = []
    chain = FallbackSTT([FakeSTT(fail_on_open=EngineError("no key"), name="cloud"), FakeSTT()])
    chain.notices.subscribe(reports.append)
    session = await chain.open("en")
    assert session is not None and chain.active.name == "fake"
    assert reports == [FellBack("stt", "cloud", "fake", "no key")]
    await chain.aclose()


async def test_every_engine_failing_is_one_clear_error() -> None:
    chain = FallbackSTT(
        [
            FakeSTT(fail_on_open=EngineError("x down"), name="x"),
            FakeSTT(fail_on_open=EngineError("y down"), name="y"),
        ]
    )
    with pytest.raises(EngineError, match="every stt engine failed: x: x down; y: y down"):
        await chain.open("en")
    await chain.aclose()


# -------------------------------------------------------------------------------- spoken text


def _chunk(piece: int, text: str, seconds: float, last: bool = True, alignment=()) -> SpeechChunk:
    return SpeechChunk(np.zeros(int(seconds * 1000), np.int16), 1000, piece, text, last, alignment)


def test_heard_text_cuts_at_word_boundary() -> None:
    s = SpokenText()
    s.add(_chunk(0, "Hello there.", 1.0))
    s.add(_chunk(1, "This is the second sentence.", 2.8))
    assert s.heard(0.4) == ""  # 4.8 of 12 characters: "Hello" is not quite over
    assert s.heard(0.5) == "Hello"
    assert s.heard(1.0) == "Hello there."
    assert s.heard(1.0 + 2.8 * 0.5) == "Hello there. This is the"
    assert s.heard(10) == "Hello there. This is the second sentence."


def test_heard_text_uses_alignment_when_given() -> None:
    s = SpokenText()
    # Words start at 0, 0.2, 0.9 s: the second word is long.
    s.add(_chunk(0, "one twooooo three", 1.2, alignment=((0, 0.0), (4, 200.0), (12, 900.0))))
    assert s.heard(0.5) == "one"
    assert s.heard(0.95) == "one twooooo"


# -------------------------------------------------------------------------------------- tools


async def test_tools_run_and_report_errors_as_results() -> None:
    from assistant.engines.base import ToolCall

    tools = default_tools()
    assert await tools.run(ToolCall("1", "calculate", '{"expression": "2**10 / 4"}')) == "256"
    assert "error" in await tools.run(ToolCall("2", "calculate", '{"expression": "__import__(1)"}'))
    assert "no tool named" in await tools.run(ToolCall("3", "nope", "{}"))
    assert "invalid arguments" in await tools.run(ToolCall("4", "calculate", "{not json"))
    assert calculate("0.1 + 0.2") == "0.3"
    assert (await tools.run(ToolCall("5", "get_time", "{}")))[:3].isalpha()


def test_json_dump_of_timeline_is_plain() -> None:
    t = Timeline(3)
    t.mark("speech_end", 1.0)
    t.mark("playback_start", 1.5)
    assert json.loads(json.dumps(t.to_dict(Budgets())))["voice_to_voice_ms"] == 500
    assert os.sep  # keep the import used on every platform


def test_heard_text_of_a_piece_still_being_synthesized_is_not_overestimated() -> None:
    s = SpokenText()
    text = "This sentence is about seventy characters long when it is all spoken out."
    s.add(_chunk(0, text, 0.8, last=False))  # only the first 0.8 s of ~5 s exists yet
    heard = s.heard(0.8)
    assert len(heard) < 20 and text.startswith(heard)
    t = SpokenText()
    t.add(_chunk(0, "one two three four", 0.6, last=False, alignment=((0, 0.0), (4, 300.0))))
    assert t.heard(0.6) == "one"  # "two" has no known end yet


def test_timeline_snapshot_round_trips_and_reads_damaged_data_totally() -> None:
    t = Timeline(3)
    t.mark("speech_start", 9.0)
    t.mark("speech_end", 10.0)
    t.mark("playback_start", 10.5)
    t.notes["endpoint_ms"] = 300
    snap = t.snapshot(Budgets())
    data = json.loads(json.dumps(snap.to_json()))
    assert data == t.to_dict(Budgets())
    assert TimelineSnapshot.from_json(data) == snap
    assert snap.voice_to_voice_ms == 500 and snap.mark_ms("speech_start") == -1000
    damaged = {"marks_ms": {"speech_end": "x", "bogus": 1, "stt_final": 5}, "stages_ms": [1]}
    assert TimelineSnapshot.from_json(damaged).marks_ms == {"stt_final": 5.0}
    assert TimelineSnapshot.from_json(None) == TimelineSnapshot()
