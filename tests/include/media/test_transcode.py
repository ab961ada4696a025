"""Tests for include/media/transcode.py: web deliverables keep their transparency and stream."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image, ImageSequence

from include.media import transcode as transcode_module
from include.media.frames import probe_frames, read_frames_video, write_frames_video
from include.media.transcode import (
    FALLBACK_FORMATS,
    WALK_FORMATS,
    WALK_OUTPUT_NAMES,
    WEB_FORMATS,
    Clip,
    MediaError,
    build_command,
    transcode,
    transcode_clips,
)

from .conftest import alpha_iou, moving_disc_clip

FPS = 24
SECONDS = 5
SIZE = 512


def _value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _output_options(argv: list[str]) -> list[str]:
    """The options after the last input (ffmpeg applies them to the output)."""
    last_input = len(argv) - 1 - argv[::-1].index("-i")
    return argv[last_input + 2:]


# -- command builders (no ffmpeg run) ----------------------------------------------------------

def test_webm_is_vp9_with_an_alpha_plane_streamed_to_stdout():
    argv = build_command("webm", "/clips/rgba.mkv", FPS)
    out = _output_options(argv)
    assert _value_after(out, "-c:v") == "libvpx-vp9"
    assert _value_after(out, "-pix_fmt") == "yuva420p"
    assert _value_after(out, "-auto-alt-ref") == "0"  # libvpx cannot combine alt-ref frames with alpha
    assert _value_after(out, "-f") == "webm"
    assert "pipe:1" in out
    assert _value_after(argv, "-r") == str(FPS) and argv.index("-r") < argv.index("-i")


def test_webp_is_lossy_animated_with_alpha_looping_forever():
    out = _output_options(build_command("webp", "/clips/rgba.mkv", FPS))
    assert _value_after(out, "-c:v") == "libwebp_anim"
    assert _value_after(out, "-pix_fmt") == "yuva420p"
    assert _value_after(out, "-lossless") == "0"
    assert _value_after(out, "-loop") == "0" and _value_after(out, "-f") == "webp"


def test_gif_reserves_a_transparent_palette_slot_and_reads_the_source_twice():
    argv = build_command("gif", "/clips/rgba.mkv", FPS)
    assert argv.count("-i") == 2  # palette pass and mapping pass: no whole-clip buffer in ffmpeg
    graph = _value_after(argv, "-filter_complex")
    assert "palettegen=" in graph and "reserve_transparent=1" in graph
    assert "paletteuse=" in graph and "alpha_threshold=128" in graph
    out = _output_options(argv)
    assert _value_after(out, "-loop") == "0" and _value_after(out, "-f") == "gif"


def test_poster_is_a_single_rgba_png():
    out = _output_options(build_command("poster", "/clips/rgba.mkv", FPS))
    assert _value_after(out, "-c:v") == "png" and _value_after(out, "-pix_fmt") == "rgba"
    assert _value_after(out, "-frames") == "1"


@pytest.mark.parametrize("fmt", WEB_FORMATS)
def test_every_format_writes_to_stdout_and_reads_urls_with_a_timeout(fmt):
    argv = build_command(fmt, "https://storage.local/gen/rgba.mkv", FPS)
    assert "pipe:1" in argv
    assert argv.index("-rw_timeout") < argv.index("-i")
    assert argv[argv.index("-i") + 1] == "https://storage.local/gen/rgba.mkv"


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="mp4"):
        build_command("mp4", "/clips/rgba.mkv", FPS)
    with pytest.raises(ValueError, match="mp4"):
        transcode("/clips/rgba.mkv", lambda name: None, FPS, formats=["mp4"])


# -- encoding the five-second 512 px loop once, then checking each deliverable ------------------

class RecordingSinks:
    """open_output for tests: writes local files and records every write and concurrency."""

    def __init__(self, directory):
        self.directory = directory
        self.chunk_sizes: dict[str, list[int]] = {}
        self.closed: set[str] = set()
        self._lock = threading.Lock()
        self._open_now = 0
        self.max_open = 0

    @contextmanager
    def __call__(self, name: str):
        sizes = self.chunk_sizes.setdefault(name, [])
        with self._lock:
            self._open_now += 1
            self.max_open = max(self.max_open, self._open_now)
        try:
            with open(self.directory / name, "wb") as file:
                outer = self

                class Sink:
                    def write(self, chunk: bytes) -> int:
                        sizes.append(len(chunk))
                        return file.write(chunk)

                yield Sink()
        finally:
            with outer._lock:
                outer._open_now -= 1
                outer.closed.add(name)


@pytest.fixture(scope="module")
def source_clip(tmp_path_factory):
    clip = moving_disc_clip(FPS * SECONDS, SIZE)
    path = tmp_path_factory.mktemp("source") / "rgba.mkv"
    write_frames_video(clip, str(path), fps=FPS)
    return clip, str(path)


@pytest.fixture(scope="module")
def encoded(source_clip, tmp_path_factory):
    _, src = source_clip
    sinks = RecordingSinks(tmp_path_factory.mktemp("assets"))
    assets = transcode(src, sinks, FPS)
    return assets, sinks


def test_all_four_assets_are_named_typed_and_fully_written(encoded):
    assets, sinks = encoded
    assert list(assets) == list(WEB_FORMATS)
    assert {fmt: (a.name, a.content_type) for fmt, a in assets.items()} == {
        "webm": ("buddy.webm", "video/webm"),
        "webp": ("buddy.webp", "image/webp"),
        "gif": ("buddy.gif", "image/gif"),
        "poster": ("poster.png", "image/png"),
    }
    for asset in assets.values():
        assert asset.bytes_written == (sinks.directory / asset.name).stat().st_size > 0
        assert asset.bytes_written == sum(sinks.chunk_sizes[asset.name])
        assert asset.seconds > 0
    assert sinks.closed == set(sinks.chunk_sizes)
    assert sinks.max_open <= 2


def test_webm_decoded_with_libvpx_has_a_real_alpha_channel(encoded, source_clip):
    clip, _ = source_clip
    assets, sinks = encoded
    path = str(sinks.directory / "buddy.webm")
    info = probe_frames(path)
    assert info["codec"] == "vp9" and info["frames"] == FPS * SECONDS and info["fps"] == FPS
    decoded = read_frames_video(path, rgba=True)
    assert decoded.shape == clip.shape
    alpha = decoded[..., 3]
    corners = np.concatenate([alpha[:, :8, :8], alpha[:, :8, -8:], alpha[:, -8:, :8], alpha[:, -8:, -8:]], axis=1)
    assert corners.max() == 0
    assert alpha[:, SIZE // 2 - 4:SIZE // 2 + 4, SIZE // 2 - 4:SIZE // 2 + 4].min() == 255
    assert alpha_iou(alpha, clip[..., 3]) >= 0.95
    # the size target: a crisp cartoon at no more than ~1.5 MB for five seconds at 512 px
    assert assets["webm"].bytes_written <= 1_500_000


def _pillow_rgba_frames(path) -> tuple[Image.Image, np.ndarray]:
    image = Image.open(path)
    frames = np.stack([np.asarray(frame.convert("RGBA")) for frame in ImageSequence.Iterator(image)])
    return image, frames


@pytest.mark.parametrize("name", ["buddy.webp", "buddy.gif"])
def test_animated_image_is_transparent_loops_forever_and_has_every_frame(encoded, source_clip, name):
    clip, _ = source_clip
    _, sinks = encoded
    image, frames = _pillow_rgba_frames(sinks.directory / name)
    assert image.info["loop"] == 0
    assert frames.shape == clip.shape  # composited by Pillow: a ghost of earlier frames would show
    assert frames[:, 0, 0, 3].max() == 0 and frames[:, -1, -1, 3].max() == 0
    assert frames[:, SIZE // 2, SIZE // 2, 3].min() == 255
    assert alpha_iou(frames[..., 3], clip[..., 3]) >= 0.95


def test_poster_is_the_first_frame_as_rgba_png(encoded, source_clip):
    clip, _ = source_clip
    _, sinks = encoded
    poster = Image.open(sinks.directory / "poster.png")
    assert poster.format == "PNG" and poster.mode == "RGBA" and poster.size == (SIZE, SIZE)
    np.testing.assert_array_equal(np.asarray(poster), clip[0])  # PNG from the lossless intermediate: exact


def test_large_outputs_are_streamed_in_many_bounded_chunks(encoded):
    _, sinks = encoded
    chunk_limit = transcode_module.STREAM_CHUNK_BYTES
    for name, sizes in sinks.chunk_sizes.items():
        assert max(sizes) <= chunk_limit, name
    # the GIF is megabytes: it must arrive as a stream of chunks, never as one write
    assert len(sinks.chunk_sizes["buddy.gif"]) >= 4


# -- short clips for behaviour that does not need five seconds -------------------------------------

@pytest.fixture(scope="module")
def short_source(tmp_path_factory, short_rgba_clip):
    path = tmp_path_factory.mktemp("short") / "rgba.mkv"
    write_frames_video(short_rgba_clip, str(path), fps=12)
    return str(path)


def test_small_chunk_size_gives_many_chunks_for_every_format(short_source, tmp_path, monkeypatch):
    monkeypatch.setattr(transcode_module, "STREAM_CHUNK_BYTES", 1024)
    sinks = RecordingSinks(tmp_path)
    assets = transcode(short_source, sinks, 12, parallel=1)
    assert sinks.max_open == 1
    for fmt, asset in assets.items():
        sizes = sinks.chunk_sizes[asset.name]
        assert len(sizes) == -(-asset.bytes_written // 1024) > 1, fmt
        assert max(sizes) == 1024


def test_only_requested_formats_are_encoded(short_source, tmp_path):
    sinks = RecordingSinks(tmp_path)
    assets = transcode(short_source, sinks, 12, formats=("poster", "webm"))
    assert list(assets) == ["poster", "webm"]
    assert set(sinks.chunk_sizes) == {"poster.png", "buddy.webm"}


def test_walk_loop_is_encoded_as_webm_and_webp_under_its_own_names(short_source, tmp_path):
    sinks = RecordingSinks(tmp_path)
    assets = transcode(short_source, sinks, 12, formats=WALK_FORMATS, names=WALK_OUTPUT_NAMES)
    assert {fmt: a.name for fmt, a in assets.items()} == {"webm": "walk.webm", "webp": "walk.webp"}
    assert (tmp_path / "walk.webm").read_bytes()[:4] == b"\x1a\x45\xdf\xa3"
    assert (tmp_path / "walk.webp").read_bytes()[8:12] == b"WEBP"


def test_clips_share_the_encoders_slowest_first_and_key_their_assets(short_source, tmp_path):
    sinks = RecordingSinks(tmp_path)
    clips = [Clip(short_source, FALLBACK_FORMATS), Clip(short_source, WALK_FORMATS, WALK_OUTPUT_NAMES, key_prefix="walk_")]
    assets = transcode_clips(clips, sinks, 12, parallel=1)
    assert {key: a.name for key, a in assets.items()} == {
        "webp": "buddy.webp", "gif": "buddy.gif", "walk_webm": "walk.webm", "walk_webp": "walk.webp"}
    # One encoder at a time here: both WebPs (the slowest) ran before the GIF and the WebM.
    assert list(sinks.chunk_sizes) == ["buddy.webp", "walk.webp", "buddy.gif", "walk.webm"]
    assert all(a.bytes_written > 0 for a in assets.values())


def test_ffmpeg_failure_raises_media_error_with_stderr_and_closes_writers(tmp_path):
    not_a_video = tmp_path / "rgba.mkv"
    not_a_video.write_bytes(b"this is not a matroska file")
    sinks = RecordingSinks(tmp_path)
    with pytest.raises(MediaError) as caught:
        transcode(str(not_a_video), sinks, 12, formats=("webm", "gif"))
    assert "rgba.mkv" in str(caught.value)
    assert caught.value.returncode not in (None, 0)
    assert caught.value.stderr_tail
    assert sinks.closed == set(sinks.chunk_sizes)


def test_outputs_carry_no_metadata_from_the_source(short_source, tmp_path):
    import subprocess

    from include.media.runner import ffmpeg_executable

    tagged = tmp_path / "tagged.mkv"
    subprocess.run(
        [ffmpeg_executable(), "-v", "error", "-i", short_source, "-c", "copy", "-metadata", "title=SECRET-PLACE",
         "-metadata", "comment=taken at home", str(tagged)],
        check=True,
    )
    assert b"SECRET-PLACE" in tagged.read_bytes()
    (tmp_path / "out").mkdir()
    transcode(str(tagged), RecordingSinks(tmp_path / "out"), 12)
    for name in transcode_module.OUTPUT_NAMES.values():
        data = (tmp_path / "out" / name).read_bytes()
        assert b"SECRET-PLACE" not in data and b"taken at home" not in data, name
