"""The embedded language model: packaged GGUF assembly, and a supervised real llama-server."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from assistant.engines.base import (
    ChatRequest,
    EngineAnnouncement,
    EngineError,
    EngineUnavailable,
    Finished,
    LanguageModel,
    Message,
    TextDelta,
    Usage,
)
from assistant.engines.local import models
from assistant.engines.local.llama_server import LlamaServer, find_binary
from assistant.engines.local.llm import LocalLLM
from assistant.engines.local.models import FAST_MODEL, PackagedModel, ensure_model

# ---------------------------------------------------------- model assembly (fast, fake parts)


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    """A three-part model whose parts are small files, registered under a test name."""
    parts = [os.urandom(1000 + i * 777) for i in range(3)]
    files = {}
    for i, data in enumerate(parts, 1):
        f = tmp_path / "site" / f"fake_part{i}" / "data" / f"part{i:02d}.bin"
        f.parent.mkdir(parents=True)
        f.write_bytes(data)
        files[f"fake-part{i}"] = f
    blob = b"".join(parts)
    model = PackagedModel(
        name="fake-model",
        title="Fake model",
        filename="fake.gguf",
        packages=tuple(files),
        version="1.0",
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        license="MIT",
    )
    monkeypatch.setitem(models.MODELS, model.name, model)
    monkeypatch.setattr(models, "_find_part", lambda dist: files.get(dist))
    monkeypatch.setenv("PARLEY_CACHE_DIR", str(tmp_path / "cache"))
    return model


def test_assembles_verifies_and_reuses_the_model(fake_model: PackagedModel) -> None:
    seen: list[float] = []
    path = ensure_model("fake-model", lambda f, _m: seen.append(f))
    assert path == models.cache_dir() / "models" / "fake.gguf"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fake_model.sha256
    assert seen[-1] == 1.0 and seen == sorted(seen)
    marker = json.loads(path.with_name("fake.gguf.verified").read_text())
    assert marker["sha256"] == fake_model.sha256 and marker["size"] == fake_model.size

    # Second call trusts the marker: no re-read (the parts could even be gone).
    mtime = path.stat().st_mtime_ns
    assert ensure_model("fake-model") == path
    assert path.stat().st_mtime_ns == mtime


def test_a_corrupted_cached_file_is_rebuilt(fake_model: PackagedModel) -> None:
    path = ensure_model("fake-model")
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime: the marker no longer matches
    assert ensure_model("fake-model") == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fake_model.sha256


def test_hash_mismatch_is_reported_and_nothing_is_kept(
    fake_model: PackagedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = dataclasses.replace(fake_model, sha256="0" * 64)
    monkeypatch.setitem(models.MODELS, bad.name, bad)
    with pytest.raises(EngineError) as info:
        ensure_model("fake-model")
    assert "checksum" in str(info.value) and "pip install --force-reinstall" in str(info.value)
    assert info.value.retryable is False
    assert list((models.cache_dir() / "models").iterdir()) == []


def test_missing_part_package_names_the_pip_package(
    fake_model: PackagedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        models, "_find_part", lambda dist: None if dist == "fake-part2" else Path(__file__)
    )
    with pytest.raises(EngineUnavailable) as info:
        ensure_model("fake-model")
    assert "pip install fake-part2==1.0" in str(info.value)


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(EngineUnavailable) as info:
        models.resolve("gpt-17")
    assert "qwen2.5-coder-1.5b" in str(info.value) and "fast" in str(info.value)


def test_packaged_model_parts_are_installed_and_add_up() -> None:
    """The real part packages are found through their metadata, in order, at the right size."""
    model = models.resolve(FAST_MODEL)
    parts = models.part_files(model)
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert sum(p.stat().st_size for p in parts) == model.size


# --------------------------------------------------- supervision, with a stand-in server (fast)

_FAKE_SERVER = """#!{python}
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
# The server gets a clean environment, so the test passes the mode on the command line.
mode = args[args.index("--fake-mode") + 1] if "--fake-mode" in args else "ok"
if mode == "fail":
    print("error: failed to load model", flush=True)
    sys.exit(3)

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503 if mode == "loading" else 200)
        self.end_headers()
        self.wfile.write(b"{{}}")

    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> LlamaServer:
    binary = tmp_path / "llama-server"
    binary.write_text(_FAKE_SERVER.format(python=sys.executable))
    binary.chmod(0o755)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    # A start may take its time on a busy machine; the one test of a server that never gets
    # ready shortens this for itself.
    return LlamaServer(
        model, binary=binary, max_restarts=1, start_timeout=30.0, log_path=tmp_path / "server.log"
    )


async def _wait_until(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_supervisor_restarts_then_gives_up(stand_in: LlamaServer) -> None:
    notices: list[str] = []
    failures: list[bool] = []

    def heard(message: str, failure: bool) -> None:
        notices.append(message)
        failures.append(failure)

    stand_in.on_notice.append(heard)
    await stand_in.start()
    first = stand_in.pid
    assert first is not None and await stand_in.healthy()
    url = stand_in.base_url

    os.kill(first, signal.SIGKILL)
    await _wait_until(lambda: stand_in.pid not in (None, first) and stand_in.running)
    await stand_in.ensure_running()
    assert stand_in.base_url == url  # same port after a restart
    assert notices[0] == "The local language model stopped unexpectedly; restarting it."

    second = stand_in.pid
    assert second is not None
    os.kill(second, signal.SIGKILL)  # a second crash within the window: over the limit
    await _wait_until(lambda: len(notices) >= 3)
    assert "was not restarted" in notices[-1]
    assert failures == [False, False, True]  # only giving up is a failure
    with pytest.raises(EngineUnavailable, match="was not restarted"):
        await stand_in.ensure_running()

    await stand_in.start()  # an explicit start tries again
    assert stand_in.running
    await stand_in.stop()
    assert stand_in.pid is None


async def test_a_server_failing_at_start_reports_its_last_words(stand_in: LlamaServer) -> None:
    stand_in.extra_args += ["--fake-mode", "fail"]
    with pytest.raises(EngineUnavailable) as info:
        await stand_in.start()
    assert "failed to load model" in str(info.value)
    assert str(stand_in.log_path) in str(info.value)
    assert stand_in.pid is None


async def test_a_server_that_never_gets_ready_is_killed(stand_in: LlamaServer) -> None:
    stand_in.extra_args += ["--fake-mode", "loading"]
    stand_in.start_timeout = 1.0  # it will not be ready however long it gets
    progress: list[float] = []
    with pytest.raises(EngineUnavailable, match="did not become ready"):
        await stand_in.start(lambda f, _m: progress.append(f))
    assert progress and progress[0] == 0.0
    assert _our_llama_servers() == []


# ----------------------------------------------------------------------- real llama-server (slow)


def _binary_or_skip() -> Path:
    try:
        return find_binary()
    except EngineUnavailable as err:
        pytest.skip(f"llama-server is not built ({err})")


REQUEST = ChatRequest(
    messages=[
        Message("system", "You are a terse assistant."),
        Message("user", "Say hello in three words."),
    ],
    max_tokens=24,
    temperature=0.0,
)


def _our_llama_servers() -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "llama-server" in " ".join(p.cmdline() or [p.name()])
        and p.status() != psutil.STATUS_ZOMBIE
    ]


@pytest.mark.slow
async def test_local_llm_streams_survives_a_crash_and_stops_cleanly() -> None:
    _binary_or_skip()
    notices: list[str] = []
    llm = LocalLLM(FAST_MODEL, timeout_first_token=60.0)
    llm.notices.subscribe(
        lambda notice: notices.append(
            notice.message if isinstance(notice, EngineAnnouncement) else ""
        )
    )
    assert isinstance(llm, LanguageModel)
    try:
        await llm.warm_up()
        server = llm.server
        assert server is not None and server.running
        assert server.base_url.startswith("http://127.0.0.1:")

        events = [e async for e in llm.stream(REQUEST)]
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert text.strip(), events
        assert any(isinstance(e, Finished) for e in events)
        usage = [e for e in events if isinstance(e, Usage)]
        assert usage and usage[-1].completion_tokens > 0 and usage[-1].prompt_tokens > 10

        # Kill the server in the middle of an answer: the request fails cleanly, it comes back.
        first_pid = server.pid
        assert first_pid is not None
        long_request = ChatRequest(
            messages=[Message("user", "Count from 1 to 200, separated by commas.")],
            max_tokens=400,
            temperature=0.0,
        )
        killed = False
        with pytest.raises(EngineError) as info:
            async for event in llm.stream(long_request):
                if isinstance(event, TextDelta) and not killed:
                    os.kill(first_pid, signal.SIGKILL)
                    killed = True
        assert killed
        assert "stopped while answering" in str(info.value)
        assert info.value.retryable is True

        deadline = time.monotonic() + 300  # a restart loads the model again
        while server.pid in (None, first_pid) or not server.running:
            assert time.monotonic() < deadline, f"not restarted; notices: {notices}"
            await asyncio.sleep(0.1)
        assert any("stopped unexpectedly" in n for n in notices), notices
        assert not psutil.pid_exists(first_pid) or (
            psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE
        )

        again = [e async for e in llm.stream(REQUEST)]
        assert "".join(e.text for e in again if isinstance(e, TextDelta)).strip()
        second_pid = server.pid
    finally:
        await llm.aclose()

    assert server.pid is None and not server.running
    assert second_pid is not None and not psutil.pid_exists(second_pid)
    assert _our_llama_servers() == []


async def _warm(llm: LocalLLM) -> bool:
    """Warm ``llm`` up and wait until its warm prompt is read in; whether there was any to read
    (a restored prompt leaves none)."""
    await llm.warm_up()
    if llm._warming is None:
        return False
    await llm._warming
    return True


async def _usage(llm: LocalLLM, request: ChatRequest) -> Usage:
    """What reading ``request`` cost: the last usage the server reported for its answer."""
    usage = [e async for e in llm.stream(request) if isinstance(e, Usage)]
    assert usage
    return usage[-1]


def _read_only_the_rest(usage: Usage, *, cached: int) -> None:
    """At least ``cached`` tokens of the prompt came from the cache, and only the last few (the
    user's words) were read anew."""
    assert usage.cached_tokens >= cached, usage
    assert usage.prompt_tokens - usage.cached_tokens < 15, usage


@pytest.mark.slow
async def test_the_system_prompt_is_read_in_while_starting() -> None:
    _binary_or_skip()
    system = Message("system", "You are a terse assistant. " * 8)
    # No prompt saved by another test's launch: this one reads its own.
    llm = LocalLLM(
        FAST_MODEL, timeout_first_token=60.0, warm_prompt=[system], prompt_cache_dir=None
    )
    try:
        read = await _warm(llm)  # in the background: the app is ready before it is done
        assert read
        request = ChatRequest([system, Message("user", "Hi.")], max_tokens=2, temperature=0.0)
        # Everything up to the user's words came from the cache.
        _read_only_the_rest(await _usage(llm, request), cached=40)
    finally:
        await llm.aclose()


@pytest.mark.slow
async def test_a_prefill_asked_before_the_server_is_up_is_read_first() -> None:
    _binary_or_skip()
    system = Message("system", "You are a terse assistant. " * 8)
    tools = Message("system", "You are a terse assistant. " * 8 + "You can use tools. " * 8)
    llm = LocalLLM(
        FAST_MODEL, timeout_first_token=60.0, warm_prompt=[system], prompt_cache_dir=None
    )
    try:
        await llm.prefill(ChatRequest([tools, Message("user", "")]))  # nothing runs yet
        read = await _warm(llm)
        assert read
        request = ChatRequest([tools, Message("user", "Hi.")], max_tokens=2, temperature=0.0)
        # The early request, not the warm prompt, was read: the tools part came from the cache.
        _read_only_the_rest(await _usage(llm, request), cached=70)
    finally:
        await llm.aclose()


REPO = Path(__file__).resolve().parents[2]

_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from assistant.engines.local.llama_server import LlamaServer

    async def main():
        server = LlamaServer(Path(sys.argv[1]), threads=1)
        await server.start()
        print(server.pid, flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_server_dies_with_a_killed_parent() -> None:
    """SIGKILL on the owning process (no cleanup runs) still takes llama-server down."""
    _binary_or_skip()
    model_path = await asyncio.to_thread(ensure_model, FAST_MODEL)
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _ORPHAN_SCRIPT,
        str(model_path),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), 120)
        child_pid = int(line)
        assert psutil.pid_exists(child_pid)
        parent.kill()
        await parent.wait()
        deadline = time.monotonic() + 60  # the kernel kills it at once (PR_SET_PDEATHSIG)
        while psutil.pid_exists(child_pid):
            if psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE:
                break
            assert time.monotonic() < deadline, "llama-server outlived its parent"
            await asyncio.sleep(0.05)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


async def test_missing_binary_tells_how_to_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_LLAMA_SERVER", str(tmp_path / "nope"))
    with pytest.raises(EngineUnavailable) as info:
        find_binary()
    assert "PARLEY_LLAMA_SERVER" in str(info.value)

    monkeypatch.delenv("PARLEY_LLAMA_SERVER")
    monkeypatch.setenv("PARLEY_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    server = LlamaServer(tmp_path / "model.gguf")
    with pytest.raises(EngineUnavailable) as info:
        await server.start()
    assert "scripts/build_llama_server.sh" in str(info.value)


class _Recorder:
    """Passes requests to a model and keeps them (which ones the router made)."""

    def __init__(self, llm: LocalLLM) -> None:
        self.llm = llm
        self.name = llm.name
        self.needs_tool_router = True
        self.continues_reply = llm.continues_reply
        self.requests: list[ChatRequest] = []

    def stream(self, request: ChatRequest):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return self.llm.stream(request)

    async def warm_up(self) -> None:
        await self.llm.warm_up()


@pytest.mark.slow
async def test_the_router_decides_none_with_one_token_and_a_tool_under_the_grammar() -> None:
    from assistant.prompt import system_prompt
    from assistant.tools import default_tools
    from assistant.tools.router import route, with_tools_block

    _binary_or_skip()
    llm = LocalLLM(FAST_MODEL, timeout_first_token=60.0)
    recorder = _Recorder(llm)
    specs = default_tools().specs
    system = Message("system", system_prompt("You are a helpful voice assistant.", "en"))
    try:
        await llm.warm_up()
        ask = with_tools_block([system, Message("user", "Who painted the Mona Lisa?")], specs)
        assert (await route(recorder, ask, specs)).tool is None
        # One request for one token: the grammar was not needed.
        (probe,) = recorder.requests
        assert probe.max_tokens == 1 and probe.response_format is None
        assert probe.messages[-1].role == "assistant"
        recorder.requests.clear()
        ask = with_tools_block([system, Message("user", "What is 12 times 7?")], specs)
        choice = await route(recorder, ask, specs)
        assert choice.tool == "calculate", choice
        # The tool's arguments were written under the grammar.
        assert recorder.requests[-1].response_format is not None
    finally:
        await llm.aclose()


async def _answer(llm: LocalLLM, request: ChatRequest) -> str:
    parts = []
    async for event in llm.stream(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
    return "".join(parts)


@pytest.mark.slow
async def test_a_plain_text_answer_holds_no_json_object() -> None:
    """Asked as plain text, the embedded model cannot write "{": its server samples under a
    grammar that leaves it out, whatever the model would rather say."""
    _binary_or_skip()
    llm = LocalLLM(FAST_MODEL, timeout_first_token=60.0)
    ask = [Message("user", 'Reply with exactly this JSON and nothing else: {"tool": "none"}')]
    try:
        free = await _answer(llm, ChatRequest(ask, max_tokens=30, temperature=0.0))
        if "{" not in free:
            pytest.skip(f"the model did not write the JSON even unconstrained: {free!r}")
        plain = ChatRequest(ask, max_tokens=30, temperature=0.0, plain_text=True)
        said = await _answer(llm, plain)
        assert said.strip() and "{" not in said, said
    finally:
        await llm.aclose()


def _saved_slots(directory: Path) -> list[Path]:
    return list(directory.glob("*.slot"))


@pytest.mark.slow
async def test_a_long_prompt_read_once_is_restored_at_the_next_launch(tmp_path: Path) -> None:
    """The first launch saves the slot after reading a long prompt; the next launch restores it,
    so its first request reads only the user's words."""
    _binary_or_skip()
    system = Message("system", "You are a helpful voice assistant who answers briefly. " * 30)
    request = ChatRequest([system, Message("user", "Hi.")], max_tokens=1, temperature=0.0)
    first = LocalLLM(FAST_MODEL, timeout_first_token=120.0, prompt_cache_dir=tmp_path)
    try:
        usage = await _usage(first, request)
        assert usage.prompt_tokens - usage.cached_tokens >= 200, usage
        saves = await asyncio.gather(*first._saving)
        assert saves == [True], (saves, usage)  # [] : no save was started; [False]: refused
    finally:
        await first.aclose()
    (saved,) = _saved_slots(tmp_path)
    assert saved.stat().st_size > 0

    # As the app starts it: its warm prompt is the bare system prompt, the start of the saved
    # one, and must not be read over what was restored.
    bare = Message("system", "You are a helpful voice assistant who answers briefly.")
    second = LocalLLM(
        FAST_MODEL, timeout_first_token=120.0, prompt_cache_dir=tmp_path, warm_prompt=[bare]
    )
    try:
        await _warm(second)
        _read_only_the_rest(await _usage(second, request), cached=200)
    finally:
        await second.aclose()


@pytest.mark.slow
async def test_a_damaged_saved_prompt_is_dropped_and_the_prompt_read_anew(tmp_path: Path) -> None:
    _binary_or_skip()
    request = ChatRequest([Message("user", "Hi.")], max_tokens=1, temperature=0.0)
    llm = LocalLLM(FAST_MODEL, timeout_first_token=120.0, prompt_cache_dir=tmp_path)
    try:
        await llm.warm_up()  # learns the file's name; nothing to restore yet
        cache = llm._prompt_cache
        assert cache is not None
        await llm.aclose()
        cache.path.write_bytes(b"not a saved slot" * 100)
        await llm.warm_up()
        assert not cache.path.exists()
        text = [e async for e in llm.stream(request) if isinstance(e, TextDelta)]
        assert text
    finally:
        await llm.aclose()
