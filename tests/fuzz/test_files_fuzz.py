"""Fuzzing what Parley reads from disk: conversation files, the settings file, WAV headers.

Whatever the bytes, loading ends in a result or the documented clear error (``OSError`` for
history, a notice for settings, ``WavError`` for audio), and no complete record is ever lost.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.audio.wav import MAX_RATE, MIN_RATE, WavError, read_wav
from assistant.config import Settings, load_settings
from assistant.history import HistoryStore, TurnRecord

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Any text, lone surrogates included (what a provider's "\udXXX" escape decodes to).
any_text = st.text(
    st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    max_size=40,
)


def _fresh(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / name
    n = 0
    while directory.exists():
        n += 1
        directory = tmp_path / f"{name}-{n}"
    directory.mkdir()
    return directory


# -------------------------------------------------------------------------------------- history


@FUZZ
@given(raw=st.binary(max_size=600))
def test_any_bytes_load_as_a_conversation(tmp_path: Path, raw: bytes) -> None:
    directory = _fresh(tmp_path, "bytes")
    path = directory / "c.jsonl"
    path.write_bytes(raw)
    conv, _ = HistoryStore(directory).load(path)
    assert all(isinstance(t, TurnRecord) for t in conv.turns)
    again, report2 = HistoryStore(directory).load(path)  # a recovered file loads cleanly
    assert report2.notice is None
    assert [t.turn_id for t in again.turns] == [t.turn_id for t in conv.turns]


garbage_line = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")),
    st.integers(1, 3000).map(lambda n: b"[" * n),
    st.integers(1, 3000).map(lambda n: b'{"type": "turn", "turn_id": ' + b"{" * n),
    st.just(b'{"type": "turn", "turn_id": 1, "user_text": "a", "assistant_text": "b", "at": 1e99'),
)


@FUZZ
@given(
    texts=st.lists(st.tuples(any_text, any_text), min_size=1, max_size=8),
    damage=st.lists(st.tuples(st.integers(0, 8), garbage_line), max_size=4),
    torn_tail=st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
)
def test_complete_records_survive_any_damage_around_them(
    tmp_path: Path,
    texts: list[tuple[str, str]],
    damage: list[tuple[int, bytes]],
    torn_tail: bytes,
) -> None:
    directory = _fresh(tmp_path, "damage")
    conv, _ = HistoryStore(directory).latest()
    for i, (user, assistant) in enumerate(texts, 1):
        conv.append(TurnRecord(i, user, assistant))
    lines = conv.path.read_bytes().split(b"\n")[:-1]
    for where, junk in sorted(damage, reverse=True):  # whole damaged lines between records
        lines.insert(min(where + 1, len(lines)), junk)
    conv.path.write_bytes(b"".join(line + b"\n" for line in lines) + torn_tail)

    again, _ = HistoryStore(directory).load(conv.path)
    assert [t.turn_id for t in again.turns] == list(range(1, len(texts) + 1))
    for turn, (user, _assistant) in zip(again.turns, texts, strict=True):
        assert turn.user_text == user.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    again.append(TurnRecord(99, "after", "recovery"))
    third, report = HistoryStore(directory).load(conv.path)
    assert report.notice is None and third.turns[-1].turn_id == 99


# ------------------------------------------------------------------------------------- settings

toml_value = st.recursive(
    st.one_of(
        st.integers(-(2**63), 2**63 - 1).map(str),
        st.floats(allow_nan=False).map(repr).filter(lambda s: "e" not in s or "." in s),
        st.booleans().map(lambda b: str(b).lower()),
        st.text(max_size=10).map(json.dumps),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(
            st.sampled_from(["a", "b", "url", "model", "threshold"]), inner, max_size=3
        ).map(lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"),
    ),
    max_leaves=8,
)
keys = st.sampled_from(
    ["language", "turn_mode", "vad", "budgets", "providers", "context_tokens", "voice", "zzz"]
)
settings_text = st.one_of(
    st.dictionaries(keys, toml_value, max_size=4).map(
        lambda d: "\n".join(f"{k} = {v}" for k, v in d.items())
    ),
    st.integers(1, 5000).map(lambda n: "vad = " + "[" * n + "]" * n),
    st.integers(1, 5000).map(lambda n: "vad = " + "{a = " * n + "1" + "}" * n),
    st.text(max_size=200),
)


@FUZZ
@given(content=st.one_of(settings_text.map(lambda t: t.encode("utf-8", "replace")), st.binary()))
def test_any_settings_file_loads_or_is_moved_aside_with_a_notice(
    tmp_path: Path, content: bytes
) -> None:
    path = _fresh(tmp_path, "config") / "settings.toml"
    path.write_bytes(content)
    loaded = load_settings(path)
    assert isinstance(loaded.settings, Settings)
    if loaded.notice is None:
        assert path.read_bytes() == content
    else:
        assert "\n" not in loaded.notice and len(loaded.notice) < 400
        assert loaded.settings == Settings() and not path.exists()
        (aside,) = path.parent.glob("settings.toml.invalid-*")
        assert aside.read_bytes() == content


# ------------------------------------------------------------------------------------ WAV files


@st.composite
def wav_files(draw: st.DrawFn) -> bytes:
    """RIFF/WAVE files whose every header field may lie, truncated anywhere."""
    tag = draw(st.sampled_from([1, 3, 6, 7, 0xFFFE, draw(st.integers(0, 0xFFFF))]))
    channels = draw(st.one_of(st.integers(1, 2), st.integers(0, 0xFFFF)))
    rate = draw(st.one_of(st.sampled_from([1, 8000, 16000, 48000]), st.integers(0, 2**32 - 1)))
    bits = draw(st.sampled_from([0, 8, 16, 24, 32, 64, draw(st.integers(0, 0xFFFF))]))
    data = draw(st.binary(max_size=400))
    fmt = struct.pack(
        "<HHIIHH",
        tag,
        channels,
        rate,
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 0xFFFF)),
        bits,
    )
    data_size = draw(st.one_of(st.just(len(data)), st.integers(0, 2**32 - 1)))
    fmt_size = draw(st.one_of(st.just(len(fmt)), st.integers(0, 2**32 - 1)))
    body = b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt
    body += b"data" + struct.pack("<I", data_size) + data
    riff_size = draw(st.one_of(st.just(len(body)), st.integers(0, 2**32 - 1)))
    whole = b"RIFF" + struct.pack("<I", riff_size) + body
    return whole[: draw(st.integers(0, len(whole)))] if draw(st.booleans()) else whole


@FUZZ
@given(content=st.one_of(wav_files(), st.binary(max_size=200)))
def test_any_wav_header_reads_or_is_a_wav_error(tmp_path: Path, content: bytes) -> None:
    path = _fresh(tmp_path, "wav") / "in.wav"
    path.write_bytes(content)
    try:
        pcm, rate = read_wav(path)
    except WavError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert MIN_RATE <= rate <= MAX_RATE
