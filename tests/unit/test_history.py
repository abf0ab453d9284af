"""The conversation file under hostile conditions: odd text, a full disk, damage, crashes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from assistant.history import HistoryStore, TurnRecord
from assistant.talk import TalkResult, write_timeline

REPO = Path(__file__).resolve().parents[2]


def _turn(i: int, text: str = "hi") -> TurnRecord:
    return TurnRecord(turn_id=i, user_text=f"{text} {i}", assistant_text=f"answer {i}")


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a child Python with the repository importable."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ----------------------------------------------------------------------------- any text at all


def test_lone_surrogates_and_odd_values_are_written_not_raised(tmp_path: Path) -> None:
    conv, _ = HistoryStore(tmp_path).latest()
    conv.append(TurnRecord(1, "hi \ud83d", "bye \udc00 ok", generated_text="x\ud800"))
    conv.append(TurnRecord(2, "a pair in halves \ud83d\ude00", "fine"))
    conv.append(TurnRecord(3, "odd timeline", "ok", timeline={"when": object()}))
    conv.append(TurnRecord(4, "uncopyable timeline", "ok", timeline={"lock": threading.Lock()}))
    assert [t.turn_id for t in conv.turns] == [1, 2, 3, 4]

    again, report = HistoryStore(tmp_path).latest()
    assert report.notice is None
    assert [t.turn_id for t in again.turns] == [1, 2, 3, 4]
    assert again.turns[0].user_text == "hi \ufffd"
    assert again.turns[0].assistant_text == "bye \ufffd ok"
    assert again.turns[1].user_text == "a pair in halves 😀"
    assert again.turns[2].timeline["when"].startswith("<object object")
    assert again.turns[3].assistant_text == "ok" and again.turns[3].timeline == {}


def test_talk_timeline_with_a_lone_surrogate_is_written(tmp_path: Path) -> None:
    path = tmp_path / "TIMELINE.json"
    write_timeline(path, TalkResult(turns=[TurnRecord(1, "hi \ud83d", "there")]))
    assert json.loads(path.read_text("utf-8"))["turns"][0]["user_text"] == "hi ?"


# --------------------------------------------------------------------------------- a full disk

_DISK_FULL = """
    import json, resource, signal, sys
    from pathlib import Path
    from assistant.history import HistoryStore, TurnRecord

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    conv, _ = HistoryStore(Path(sys.argv[1])).latest()
    conv.append(TurnRecord(1, "first", "one"))
    before = conv.path.stat().st_size
    # Room for half of the next record: the kernel writes what fits, then refuses the rest.
    resource.setrlimit(resource.RLIMIT_FSIZE, (before + 150, resource.RLIM_INFINITY))
    log = []
    for turn in (TurnRecord(2, "x" * 300, "two"), TurnRecord(3, "third", "three")):
        try:
            conv.append(turn)
            log.append("saved")
        except OSError as exc:
            log.append(f"OSError {exc.errno}")
        log.append(conv.path.stat().st_size - before)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    conv.append(TurnRecord(4, "fourth", "four"))  # space again
    print(json.dumps(log))
"""


def test_disk_full_leaves_no_partial_line_and_the_turn_is_written_later(tmp_path: Path) -> None:
    """A real short write and EFBIG from the kernel (RLIMIT_FSIZE), not a mock."""
    proc = _run(_DISK_FULL, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    log = json.loads(proc.stdout)
    assert log[0].startswith("OSError") and log[2].startswith("OSError")
    assert log[1] == 0 and log[3] == 0  # cut back: not a byte of the failed turns stays

    again, report = HistoryStore(tmp_path).latest()
    assert report.notice is None  # nothing damaged
    assert [t.turn_id for t in again.turns] == [1, 2, 3, 4]  # the failed turns, in order
    assert again.turns[1].user_text == "x" * 300


def test_a_fragment_left_by_a_crash_does_not_swallow_the_next_turn(tmp_path: Path) -> None:
    conv, _ = HistoryStore(tmp_path).latest()
    conv.append(_turn(1))
    with open(conv.path, "ab") as f:
        f.write(b'{"type": "turn", "turn_id": 2, "user_te')  # killed mid-write
    conv.append(_turn(3))
    again, report = HistoryStore(tmp_path).load(conv.path)
    assert [t.turn_id for t in again.turns] == [1, 3]
    assert report.recovered_lines == 1


# ------------------------------------------------------------------------------ damaged files


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 100_000,  # nesting deeper than the JSON parser's recursion limit
        b'{"type": "turn", "turn_id": 5, "user_text": ' + b"[" * 50_000,
        b'{"type": "turn", "turn_id": 5, "user_text": "a", "assistant_text": "b", "at": '
        + b"9" * 400
        + b"}",  # a number no float can hold
        b'{"type": "turn", "turn_id": 5, "user_text": "a", "assistant_text": "b", '
        b'"tool_calls": [{"id": 1}]}',
        b'{"type": "turn", "turn_id": "five", "user_text": "a", "assistant_text": "b"}',
        b'{"type": "turn", "turn_id": 5, "user_text": "\xff"}',
    ],
    ids=["deep-array", "deep-in-a-record", "huge-number", "bad-tool", "bad-id", "not-utf8"],
)
def test_a_damaged_record_is_set_aside_and_the_rest_kept(tmp_path: Path, line: bytes) -> None:
    conv, _ = HistoryStore(tmp_path).latest()
    conv.append(_turn(1))
    with open(conv.path, "ab") as f:
        f.write(line + b"\n")
    conv.append(_turn(2))
    original = conv.path.read_bytes()

    again, report = HistoryStore(tmp_path).load(conv.path)
    assert [t.turn_id for t in again.turns] == [1, 2]
    assert report.recovered_lines == 1
    assert report.kept_as is not None and report.kept_as.read_bytes() == original
    third, report3 = HistoryStore(tmp_path).load(conv.path)
    assert [t.turn_id for t in third.turns] == [1, 2] and report3.notice is None


# ---------------------------------------------------------------------------- crash in recovery

_CRASHING_RECOVERY = """
    import os, sys
    from pathlib import Path
    from assistant.history import HistoryStore

    # Die on the k-th file-system step of the recovery, before or after it, with no cleanup.
    k, when, calls = int(sys.argv[2]), sys.argv[3], [0]

    def crashing(real):
        def step(*args, **kwargs):
            calls[0] += 1
            if calls[0] == k and when == "before":
                os._exit(9)
            result = real(*args, **kwargs)
            if calls[0] == k and when == "after":
                os._exit(9)
            return result
        return step

    for name in ("fsync", "link", "replace", "rename", "unlink"):
        setattr(os, name, crashing(getattr(os, name)))
    HistoryStore(Path(sys.argv[1])).latest()
"""


def test_recovery_survives_a_crash_at_every_step(tmp_path: Path) -> None:
    conv, _ = HistoryStore(tmp_path / "seed").latest()
    for i in (1, 2):
        conv.append(_turn(i))
    with open(conv.path, "ab") as f:
        f.write(b'{"type": "turn", "turn_id": 3, "us')  # the damage to recover from
    damaged = conv.path.read_bytes()

    steps = 0
    for k in range(1, 20):
        for when in ("before", "after"):
            directory = tmp_path / f"crash-{k}-{when}"
            directory.mkdir()
            (directory / conv.path.name).write_bytes(damaged)
            proc = _run(_CRASHING_RECOVERY, str(directory), str(k), when)
            assert proc.returncode in (0, 9), proc.stderr
            crashed = proc.returncode == 9
            where = f"crash {when} step {k}"

            # On disk: the conversation file, whole (original or recovered), and the original.
            path = directory / conv.path.name
            assert path.exists(), f"conversation file missing after a {where}"
            assert path.read_bytes() in (damaged, damaged[: damaged.rindex(b"\n") + 1]), where
            copies = [p.read_bytes() for p in directory.iterdir() if p.is_file()]
            assert damaged in copies, f"original lost after a {where}"
            # The next start finds every complete turn.
            again, _ = HistoryStore(directory).latest()
            assert again.path == path and [t.turn_id for t in again.turns] == [1, 2], where
            steps += crashed
        if not crashed:
            break
    assert steps >= 6  # recovery has several steps, and a crash at each was survived
