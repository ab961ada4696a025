"""Running ffmpeg: the one place that starts the ffmpeg binary and moves bytes through it.

Commands are built elsewhere (``frames.py``, ``transcode.py``) with ffmpeg-python as pure
functions; this module runs an argv with the static binary shipped by ``imageio-ffmpeg`` (no
system ffmpeg is assumed), feeds its stdin from an iterable of buffers, copies its stdout to a
writer in fixed-size chunks, keeps only the tail of its stderr, and turns a non-zero exit into
:class:`MediaError`. Nothing here buffers a whole output file.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import imageio_ffmpeg

# 256 KiB: large enough that a pipe read is not dominated by syscall overhead, small enough
# that object-storage writers see a steady stream instead of one big buffer.
STREAM_CHUNK_BYTES = 256 * 1024

# ffmpeg's last lines say why it failed; earlier lines are banner and stream listings.
STDERR_TAIL_LINES = 40

# Flags every command gets: no banner noise, only errors on stderr (our parsers that need the
# stream listing ask for it explicitly), and never read keyboard commands from stdin.
QUIET_GLOBAL_ARGS = ("-hide_banner", "-nostdin", "-loglevel", "error")

# A stalled HTTP source must fail the task instead of hanging it forever (microseconds).
HTTP_READ_TIMEOUT_US = 30_000_000


class MediaError(Exception):
    """ffmpeg could not do what was asked; the message ends with the tail of its stderr."""

    def __init__(self, message: str, *, argv: list[str] | None = None, returncode: int | None = None,
                 stderr_tail: str = "") -> None:
        detail = f"{message} (exit code {returncode})" if returncode is not None else message
        if stderr_tail:
            detail = f"{detail}\n{stderr_tail}"
        super().__init__(detail)
        self.argv = argv or []
        self.returncode = returncode
        self.stderr_tail = stderr_tail


@lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    """Path of the static ffmpeg binary bundled with imageio-ffmpeg."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def source_input_options(src: str) -> dict[str, Any]:
    """Input options for reading ``src``: HTTP sources get a read timeout and reconnects.

    These options exist only for the http protocol; giving them for a local path makes ffmpeg
    refuse the input, hence the distinction.
    """
    if is_url(src):
        return {"rw_timeout": HTTP_READ_TIMEOUT_US, "reconnect": 1, "reconnect_on_network_error": 1}
    return {}


class _StderrTail:
    """Drains a process's stderr in a thread (so ffmpeg never blocks on a full pipe) and keeps
    the last lines for error messages, plus everything when a caller needs to parse it."""

    def __init__(self, stream, keep_all: bool = False) -> None:
        self._stream = stream
        self._tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._all: list[str] | None = [] if keep_all else None
        self._thread = threading.Thread(target=self._drain, name="ffmpeg-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for raw in iter(self._stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self._tail.append(line)
            if self._all is not None:
                self._all.append(line)
        self._stream.close()

    def join(self) -> None:
        self._thread.join()

    @property
    def tail(self) -> str:
        return "\n".join(self._tail)

    @property
    def text(self) -> str:
        return "\n".join(self._all or [])


class _StdinFeeder:
    """Writes buffers to ffmpeg's stdin in a thread while the caller reads stdout: doing both
    in one thread deadlocks as soon as either pipe fills."""

    def __init__(self, proc: subprocess.Popen, buffers: Iterable[Any]) -> None:
        self._proc = proc
        self._buffers = buffers
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._feed, name="ffmpeg-stdin", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        stdin = self._proc.stdin
        try:
            for buffer in self._buffers:
                stdin.write(buffer)
        except BrokenPipeError:
            # ffmpeg exited early; its exit code and stderr tell why.
            pass
        except BaseException as exc:  # the caller's frames iterable failed: stop ffmpeg too
            self.error = exc
            self._proc.kill()
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    def join(self) -> None:
        self._thread.join()


def run_ffmpeg(argv: list[str], write: Callable[[bytes], Any] | None = None, *,
               stdin_buffers: Iterable[Any] | None = None, chunk_size: int = STREAM_CHUNK_BYTES,
               keep_stderr: bool = False, check: bool = True, nice: int = 0) -> tuple[int, int, str]:
    """Run ``argv``; copy stdout to ``write`` in chunks of at most ``chunk_size`` bytes.

    ``nice`` > 0 lowers ffmpeg's CPU priority by that much (set as it starts, before it opens its
    input and starts its threads, which inherit it; no ``preexec_fn``, which is unsafe in threads).

    ``stdin_buffers`` (bytes-like objects) are fed to stdin concurrently. Returns
    ``(returncode, bytes_written, stderr)`` where stderr is the full text if ``keep_stderr``
    else its tail. With ``check`` a non-zero exit raises :class:`MediaError`. If ``write`` or
    the stdin iterable raises, ffmpeg is killed and that exception propagates.
    """
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin_buffers is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if nice > 0:
        try:
            os.setpriority(os.PRIO_PROCESS, proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + nice)
        except OSError:  # already gone: its exit code says why
            pass
    stderr = _StderrTail(proc.stderr, keep_all=keep_stderr)
    feeder = _StdinFeeder(proc, stdin_buffers) if stdin_buffers is not None else None
    bytes_written = 0
    try:
        while True:
            chunk = proc.stdout.read(chunk_size)
            if not chunk:
                break
            if write is not None:
                write(chunk)
            bytes_written += len(chunk)
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.stdout.close()
        returncode = proc.wait()
        if feeder is not None:
            feeder.join()
        stderr.join()
    if feeder is not None and feeder.error is not None:
        raise feeder.error
    if check and returncode != 0:
        raise MediaError("ffmpeg failed", argv=argv, returncode=returncode, stderr_tail=stderr.tail)
    return returncode, bytes_written, stderr.text if keep_stderr else stderr.tail
