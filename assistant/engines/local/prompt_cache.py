"""The embedded model's read prompt, kept across launches.

Reading the system prompt with its tools (some 700 tokens) is the whole of the first reply's
wait after a start: about 8 s on two cores. llama-server can write a slot's prompt cache to a
file and read it back (``--slot-save-path``, ``POST /slots/0?action=save|restore``): 26 MB and
a few milliseconds for 900 tokens. So the first launch saves the slot once it has read a long
prompt, and every later launch restores it before its first request; the server then reads
only what differs from the saved prompt (a new language line, the conversation), as it does
between turns.

The file is named after the model file and the server binary, so another model or another
build of llama-server never reads a state it did not write. A file that fails to restore is
removed (it is rebuilt at the next long prompt). Everything here is best effort: a failure is
logged and the model works as before, only slower to its first reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from assistant.engines.base import EngineError, Usage

log = logging.getLogger(__name__)

#: A request that read at least this many new prompt tokens is worth saving for the next launch.
SAVE_AFTER_TOKENS = 200
#: A save the server refuses (a slot still busy, a slow disk) is tried this many times, this many
#: seconds apart.
SAVE_ATTEMPTS = 3
SAVE_RETRY_PAUSE = 0.5

#: POSTs a JSON body to a URL of the server, returning the decoded answer (or raising
#: ``EngineError``): ``OpenAIChatLLM.post_json``.
Post = Callable[[str, dict[str, object]], Awaitable[object]]


def slot_file_name(model_path: Path, binary: Path) -> str:
    """A file name (no directory: llama-server refuses paths) for this model and server build."""
    identity = []
    for path in (model_path, binary):
        try:
            stat = path.stat()
            identity.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:
            identity.append(str(path))
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    return f"{model_path.stem}-{digest}.slot"


class PromptCache:
    """Restores the saved prompt at a launch and saves a newly read long one, once a launch.

    ``directory`` is the server's ``--slot-save-path``; ``root`` each call's server address
    (``http://127.0.0.1:PORT``, which changes across restarts).
    """

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self._saved = False

    @property
    def path(self) -> Path:
        return self.directory / self.name

    async def restore(self, post: Post, root: str) -> int:
        """Load the saved prompt into slot 0; the number of tokens restored (0: none)."""
        self._saved = False
        if not self.path.is_file():
            return 0
        try:
            answer = await post(f"{root}/slots/0?action=restore", {"filename": self.name})
        except EngineError as err:
            log.info("the saved prompt could not be restored (%s); it is read anew", err)
            self.path.unlink(missing_ok=True)
            return 0
        restored = answer.get("n_restored") if isinstance(answer, dict) else None
        count = restored if isinstance(restored, int) else 0
        log.info("restored the model's saved prompt: %d tokens", count)
        return count

    def worth_saving(self, usage: Usage) -> bool:
        """Whether a request with this usage read enough new prompt to save (once a launch)."""
        return not self._saved and usage.prompt_tokens - usage.cached_tokens >= SAVE_AFTER_TOKENS

    async def save(self, post: Post, root: str, *, pause: float = SAVE_RETRY_PAUSE) -> bool:
        """Write slot 0's prompt to the file; False if the server could not (busy, disk full)
        in ``SAVE_ATTEMPTS`` tries ``pause`` seconds apart. After a failure the next long
        prompt of this launch is worth saving again."""
        self._saved = True
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            try:
                answer = await post(f"{root}/slots/0?action=save", {"filename": self.name})
            except EngineError as err:
                log.info("the model's prompt could not be saved (try %d): %s", attempt, err)
                if attempt < SAVE_ATTEMPTS:
                    await asyncio.sleep(pause)
                continue
            saved = answer.get("n_saved") if isinstance(answer, dict) else None
            log.info("saved the model's prompt for the next start: %s tokens", saved)
            return True
        self._saved = False
        return False
