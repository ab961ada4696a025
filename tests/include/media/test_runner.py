"""Tests for include/media/runner.py: running ffmpeg, streaming its stdout, reporting failures."""

from __future__ import annotations

import pytest

from include.media.runner import (
    MediaError,
    ffmpeg_executable,
    run_ffmpeg,
    source_input_options,
)


def _testsrc_argv(seconds: int = 1) -> list[str]:
    # ffmpeg's built-in test pattern as raw video on stdout: a known, sizeable output
    return [ffmpeg_executable(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
            "-i", f"testsrc=size=64x64:rate=10:duration={seconds}", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def test_stdout_is_copied_in_bounded_chunks():
    chunks: list[int] = []
    returncode, written, _ = run_ffmpeg(_testsrc_argv(), lambda chunk: chunks.append(len(chunk)), chunk_size=4096)
    assert returncode == 0
    assert written == 10 * 64 * 64 * 3 == sum(chunks)
    assert len(chunks) == -(-written // 4096)
    assert max(chunks) == 4096


def test_non_zero_exit_raises_with_stderr_tail():
    argv = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-i", "/nonexistent/clip.mkv", "-f", "null", "-"]
    with pytest.raises(MediaError) as caught:
        run_ffmpeg(argv)
    assert caught.value.returncode != 0
    assert "/nonexistent/clip.mkv" in caught.value.stderr_tail
    assert "/nonexistent/clip.mkv" in str(caught.value)


def test_writer_failure_stops_ffmpeg_and_propagates():
    def failing_writer(chunk: bytes) -> None:
        raise OSError("storage is full")

    with pytest.raises(OSError, match="storage is full"):
        run_ffmpeg(_testsrc_argv(seconds=30), failing_writer)


def test_stdin_iterable_failure_propagates():
    argv = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "rawvideo",
            "-pix_fmt", "gray", "-s", "8x8", "-i", "pipe:0", "-f", "null", "-"]

    def frames():
        yield bytes(64)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        run_ffmpeg(argv, stdin_buffers=frames())


def test_http_sources_get_timeouts_and_paths_get_nothing():
    assert source_input_options("/var/clip.mkv") == {}
    assert source_input_options("file.mkv") == {}
    options = source_input_options("https://storage.example/clip.mkv")
    assert options["rw_timeout"] > 0 and options["reconnect"] == 1


def test_nice_lowers_the_encoders_cpu_priority():
    import os
    import sys

    argv = [sys.executable, "-c", "import os, time; time.sleep(0.3); print(os.getpriority(os.PRIO_PROCESS, 0))"]
    out: list[bytes] = []
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    run_ffmpeg(argv, out.append, nice=5)
    assert int(b"".join(out)) == min(mine + 5, 19)
    out.clear()
    run_ffmpeg(argv, out.append)
    assert int(b"".join(out)) == mine
