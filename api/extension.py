"""The Chrome extension as a package: the ``extension/`` folder plus the widget (``embed.js``).

The widget has one implementation, ``api/static/embed.js``; the extension's content script runs
that same file, so a package is the folder with the widget copied in. ``GET /extension.zip``
builds the zip at request time; ``python -m api.extension DIR`` (``make extension``) writes the
unpacked folder that Chromium loads with ``--load-extension``.
"""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

from api.embedding import EMBED_JS

EXTENSION_DIR = Path(__file__).resolve().parents[1] / "extension"
# Fixed timestamps: the same sources make the same zip, byte for byte.
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


def extension_files() -> Iterator[tuple[str, bytes]]:
    """(path inside the package, content) for every file of the extension, sorted."""
    files = {path.relative_to(EXTENSION_DIR).as_posix(): path for path in EXTENSION_DIR.rglob("*") if path.is_file()}
    files["embed.js"] = EMBED_JS
    for name in sorted(files):
        yield name, files[name].read_bytes()


def extension_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in extension_files():
            archive.writestr(zipfile.ZipInfo(f"bitbuddies-extension/{name}", _ZIP_TIME), content)
    return buffer.getvalue()


def write_extension(destination: Path) -> Path:
    """Write the unpacked extension into ``destination`` (created); returns it."""
    for name, content in extension_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return destination


if __name__ == "__main__":
    print(write_extension(Path(sys.argv[1] if len(sys.argv) > 1 else "var/extension")))
