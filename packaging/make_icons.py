"""Render Parley's SVG icon into the icon file an OS's executable needs (build time only).

    python packaging/make_icons.py OUT.ico     (Windows)
    python packaging/make_icons.py OUT.icns    (macOS)

Qt draws the SVG and writes the file through its own image plugins, so no other image library
is needed on the build machine.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = {".ico": 256, ".icns": 1024, ".png": 256}
SOURCE = Path(__file__).resolve().parent.parent / "resources" / "icons" / "parley.svg"


def render(out: Path) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QImageWriter, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    size = SIZES[out.suffix]
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    QSvgRenderer(str(SOURCE)).render(painter)
    painter.end()
    writer = QImageWriter(str(out), out.suffix[1:].encode())
    if not writer.write(image):
        raise SystemExit(f"make_icons: cannot write {out}: {writer.errorString()}")


if __name__ == "__main__":
    if len(sys.argv) != 2 or Path(sys.argv[1]).suffix not in SIZES:
        raise SystemExit(__doc__)
    render(Path(sys.argv[1]))
