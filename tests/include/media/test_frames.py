"""Tests for include/media/frames.py: lossless Ut Video intermediates, probing, reading over HTTP."""

from __future__ import annotations

import functools
import http.server
import io
import threading

import numpy as np
import pytest

from include.media.frames import (
    build_read_command,
    build_write_command,
    probe_frames,
    read_frames_video,
    write_frames_video,
)


def _value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _random_rgba(frames: int, height: int, width: int) -> np.ndarray:
    # noise is the worst case for a lossy path: any rounding anywhere shows up
    return np.random.default_rng(7).integers(0, 256, (frames, height, width, 4), dtype=np.uint8)


# -- command builders (no ffmpeg run) ----------------------------------------------------------

@pytest.mark.parametrize(("channels", "raw", "stored"), [(4, "rgba", "gbrap"), (3, "rgb24", "gbrp")])
def test_write_command_encodes_raw_stdin_frames_as_utvideo_matroska(channels, raw, stored):
    argv = build_write_command(640, 360, channels, 24, "pipe:1")
    input_at = argv.index("-i")
    assert argv[input_at + 1] == "pipe:0"
    head, tail = argv[:input_at], argv[input_at + 2:]
    assert _value_after(head, "-f") == "rawvideo" and _value_after(head, "-pix_fmt") == raw
    assert _value_after(head, "-s") == "640x360" and _value_after(head, "-framerate") == "24"
    assert _value_after(tail, "-c:v") == "utvideo" and _value_after(tail, "-pix_fmt") == stored
    assert _value_after(tail, "-f") == "matroska"
    assert "pipe:1" in tail


def test_read_command_decodes_vp9_with_libvpx_to_keep_alpha():
    argv = build_read_command("clip.webm", rgba=True, codec="vp9")
    assert argv.index("libvpx-vp9") < argv.index("-i")
    assert _value_after(argv, "-pix_fmt") == "rgba" and _value_after(argv, "-f") == "rawvideo"
    assert _value_after(argv, "-fps_mode") == "passthrough"


def test_read_command_uses_native_decoder_for_utvideo_and_rgb24_without_alpha():
    argv = build_read_command("clip.mkv", rgba=False, codec="utvideo")
    assert "libvpx-vp9" not in argv
    assert _value_after(argv, "-pix_fmt") == "rgb24"


def test_read_command_for_url_sets_http_timeout_before_input():
    argv = build_read_command("http://storage.local/clip.mkv", rgba=True, codec="utvideo")
    assert argv.index("-rw_timeout") < argv.index("-i")


# -- round trips ------------------------------------------------------------------------------

def test_rgba_round_trip_through_a_path_is_exact(tmp_path):
    frames = _random_rgba(6, 47, 33)  # odd sizes: no chroma subsampling may sneak in
    path = tmp_path / "clip.mkv"
    write_frames_video(frames, path, fps=24)  # a pathlib.Path works as well as a str
    decoded = read_frames_video(str(path), rgba=True)
    assert decoded.dtype == np.uint8 and decoded.shape == frames.shape
    np.testing.assert_array_equal(decoded, frames)


def test_rgba_round_trip_streamed_to_a_file_object_is_exact(tmp_path, short_rgba_clip):
    sink = io.BytesIO()
    write_frames_video(short_rgba_clip, sink, fps=12)
    path = tmp_path / "piped.mkv"
    path.write_bytes(sink.getvalue())
    np.testing.assert_array_equal(read_frames_video(str(path), rgba=True), short_rgba_clip)


def test_rgb_frames_from_a_generator_round_trip_and_read_back_as_rgba_opaque(tmp_path):
    frames = _random_rgba(5, 32, 40)[..., :3]
    path = str(tmp_path / "rgb.mkv")
    write_frames_video((frame for frame in frames), path, fps=10)
    np.testing.assert_array_equal(read_frames_video(path, rgba=False), frames)
    as_rgba = read_frames_video(path, rgba=True)
    np.testing.assert_array_equal(as_rgba[..., :3], frames)
    assert (as_rgba[..., 3] == 255).all()


def test_streamed_output_arrives_in_several_chunks():
    chunk_sizes: list[int] = []

    class RecordingWriter:
        def write(self, chunk: bytes) -> int:
            chunk_sizes.append(len(chunk))
            return len(chunk)

    write_frames_video(_random_rgba(8, 128, 128), RecordingWriter(), fps=24)  # ~0.5 MB of noise
    assert len(chunk_sizes) > 1
    assert max(chunk_sizes) <= 256 * 1024


def test_rgba_alpha_survives_and_rgba_rgb_are_read_from_the_same_file(tmp_path, short_rgba_clip):
    path = str(tmp_path / "clip.mkv")
    write_frames_video(short_rgba_clip, path, fps=12)
    np.testing.assert_array_equal(read_frames_video(path, rgba=False), short_rgba_clip[..., :3])


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(np.zeros((2, 8, 8, 4), np.float32), id="not-uint8"),
        pytest.param(np.zeros((2, 8, 8, 2), np.uint8), id="two-channels"),
        pytest.param(np.zeros((8, 8, 4), np.uint8), id="single-frame-array"),
        pytest.param([np.zeros((8, 8, 4), np.uint8), np.zeros((8, 9, 4), np.uint8)], id="mixed-shapes"),
        pytest.param([], id="empty"),
    ],
)
def test_invalid_frames_are_refused(tmp_path, frames):
    with pytest.raises(ValueError):
        write_frames_video(frames, str(tmp_path / "bad.mkv"), fps=24)


# -- probing and URLs ---------------------------------------------------------------------------

def test_probe_reports_size_rate_and_frame_count_of_a_piped_clip(tmp_path, short_rgba_clip):
    # piped Matroska has no duration index: the count must come from the packets
    sink = io.BytesIO()
    write_frames_video(short_rgba_clip, sink, fps=12)
    path = tmp_path / "piped.mkv"
    path.write_bytes(sink.getvalue())
    info = probe_frames(str(path))
    assert info["width"] == 96 and info["height"] == 96
    assert info["fps"] == 12 and info["frames"] == 12
    assert info["codec"] == "utvideo" and info["pix_fmt"] == "gbrap"


@pytest.fixture()
def http_root(tmp_path):
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep test output clean
        pass


def test_read_and_probe_over_http(http_root, short_rgba_clip):
    root, base_url = http_root
    write_frames_video(short_rgba_clip, str(root / "clip.mkv"), fps=12)
    np.testing.assert_array_equal(read_frames_video(f"{base_url}/clip.mkv", rgba=True), short_rgba_clip)
    assert probe_frames(f"{base_url}/clip.mkv")["frames"] == 12


def test_missing_source_raises_media_error(tmp_path):
    from include.media.runner import MediaError

    with pytest.raises(MediaError, match="no video stream"):
        read_frames_video(str(tmp_path / "missing.mkv"), rgba=True)
    with pytest.raises(MediaError):
        probe_frames(str(tmp_path / "missing.mkv"))
