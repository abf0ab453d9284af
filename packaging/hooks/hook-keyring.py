"""keyring with this OS's backends only (replaces PyInstaller's hook, which takes them all).

keyring finds its backends through the entry points in its metadata, so the bundle gets a copy
of that metadata listing only the backends it carries.
"""

import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

BACKENDS = {
    "linux": {"SecretService": "keyring.backends.SecretService"},
    "win32": {"Windows": "keyring.backends.Windows"},
    "darwin": {"macOS": "keyring.backends.macOS"},
}
ALWAYS = {"chainer": "keyring.backends.chainer", "fail": "keyring.backends.fail"}

kept = {**BACKENDS["linux" if sys.platform.startswith("linux") else sys.platform], **ALWAYS}
hiddenimports = sorted(kept.values())
excludedimports = [
    *(
        module
        for backends in BACKENDS.values()
        for module in backends.values()
        if module not in kept.values()
    ),
    "keyring.backends.kwallet",
    "keyring.backends.libsecret",
]

dist = metadata.distribution("keyring")
source = Path(str(dist._path))  # type: ignore[attr-defined]  # the .dist-info folder
staged = Path(tempfile.mkdtemp(prefix="parley-keyring-")) / source.name
shutil.copytree(source, staged)
points = [f"{name} = {module}" for name, module in kept.items() if name in dist.entry_points.names]
(staged / "entry_points.txt").write_text("[keyring.backends]\n" + "\n".join(points) + "\n")
datas = [(str(staged), source.name)]
