"""The web deliverables of a buddy: transparent WebM, animated WebP, GIF and a poster PNG.

Input is the RGBA clip (lossless Ut Video, ``include/media/frames.py``) produced by the segment-video stage (a path or an http(s) URL).
Each format is one ffmpeg process whose stdout is copied chunk by chunk into a writer the
caller opens (an ObjectStoragePath in the Airflow task, a local file in tests): no deliverable
is ever held whole in memory or staged in a temporary file.

Why these settings (measured on 2 cores, 120 frames at 512 px, see bench/bench_transcode.py):
- WebM: VP9 with an alpha plane (``yuva420p``; ``auto-alt-ref 0`` because libvpx cannot
  produce alt-ref frames together with alpha). ``deadline realtime`` at ``cpu-used 8``: on a
  real buddy clip it encodes in 0.9 s against 4.4 s for ``good``/``cpu-used 5`` (whose file is
  ~40 % smaller: 440 vs 705 kB); the encode sits on the user's critical path, so speed wins while
  the file stays well under the cap below; ``crf 32`` keeps flat
  cartoon colours and ink lines crisp, and the ``b:v`` cap (constrained quality) bounds a 5 s
  clip to about 1.25 MB even for busy frames.
- WebP: lossy with alpha (``yuva420p``), libwebp's default quality 75, looping forever: the
  fallback for browsers that play VP9 without its alpha, and the walk loop's second format.
  Effort (``compression_level``, libwebp's method) 2 instead of the default 4: a buddy clip
  encodes in 2.0 s instead of 2.8 s for a file 6 % larger (1.90 vs 1.79 MB); the WebP was the
  slowest encode of every buddy, twice (clip and walk loop).
- GIF: a single palette for the whole clip (no colour flicker between frames) with a slot
  reserved for transparency; pixels below half opacity become transparent. The palette is
  computed from a first read of the source while a second read is mapped onto it, so ffmpeg
  never buffers the whole decoded clip (it would, with ``split``).
- Poster: frame 0 as an RGBA PNG; loops start and end at rest, so the first frame is the
  character's neutral pose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO

import ffmpeg

from include.media.runner import (
    QUIET_GLOBAL_ARGS,
    STREAM_CHUNK_BYTES,
    MediaError,
    ffmpeg_executable,
    run_ffmpeg,
    source_input_options,
)

__all__ = ["WEB_FORMATS", "FIRST_FORMATS", "FALLBACK_FORMATS", "OUTPUT_NAMES", "WALK_FORMATS", "WALK_OUTPUT_NAMES", "CONTENT_TYPES", "Clip", "EncodedAsset", "MediaError", "build_command",
           "transcode", "transcode_clips"]

WEB_FORMATS = ("webm", "webp", "gif", "poster")
# What a user sees first (the result page plays the WebM over its poster), and the fallbacks for
# browsers without VP9 alpha, encoded after the buddy is published.
FIRST_FORMATS = ("webm", "poster")
FALLBACK_FORMATS = ("webp", "gif")

OUTPUT_NAMES = {"webm": "buddy.webm", "webp": "buddy.webp", "gif": "buddy.gif", "poster": "poster.png"}
# The walk loop: the two formats the embed widget and the extension play.
WALK_FORMATS = ("webm", "webp")
WALK_OUTPUT_NAMES = {"webm": "walk.webm", "webp": "walk.webp"}
CONTENT_TYPES = {"webm": "video/webm", "webp": "image/webp", "gif": "image/gif", "poster": "image/png"}

# See the module docstring for why these values.
WEBM_CRF = 32
WEBM_MAX_BITRATE = "2M"
WEBP_QUALITY = 75
WEBP_METHOD = 2
GIF_ALPHA_THRESHOLD = 128


@dataclass(frozen=True)
class EncodedAsset:
    name: str
    content_type: str
    bytes_written: int
    seconds: float


def _source(src: str, fps: int):
    # -r on the input re-times the clip at `fps` whatever its container says, so every
    # deliverable plays at the generation's animation rate.
    return ffmpeg.input(src, r=fps, **source_input_options(src))


def _webm(src: str, fps: int):
    return _source(src, fps).video.output(
        "pipe:1",
        format="webm",
        **{
            "c:v": "libvpx-vp9",
            "pix_fmt": "yuva420p",
            "auto-alt-ref": 0,
            "deadline": "realtime",
            "cpu-used": 8,
            "row-mt": 1,
            "crf": WEBM_CRF,
            "b:v": WEBM_MAX_BITRATE,
        },
    )


def _webp(src: str, fps: int):
    return _source(src, fps).video.output(
        "pipe:1",
        format="webp",
        loop=0,  # 0 = forever; the muxer's default plays once
        **{
            "c:v": "libwebp_anim",
            "pix_fmt": "yuva420p",
            "lossless": 0,
            "quality": WEBP_QUALITY,
            "compression_level": WEBP_METHOD,
        },
    )


def _gif(src: str, fps: int):
    # Two reads of the source: one feeds palettegen (which emits only at the end of the
    # clip), the other is mapped onto the palette as it arrives. ffmpeg-python merges inputs
    # with identical options into one `-i`, and one shared input would make ffmpeg buffer
    # every decoded frame until the palette exists; `an` (video only: a no-op for our silent
    # clips) keeps the palette read a separate input.
    palette = ffmpeg.input(src, r=fps, an=None, **source_input_options(src)).video.filter(
        "palettegen", reserve_transparent=1, stats_mode="full")
    frames = _source(src, fps).video
    return ffmpeg.filter(
        [frames, palette],
        "paletteuse",
        alpha_threshold=GIF_ALPHA_THRESHOLD,
        # ordered dithering is stable from frame to frame (error diffusion crawls) and
        # compresses better; only changed rectangles are re-mapped
        dither="bayer",
        bayer_scale=5,
        diff_mode="rectangle",
    ).output("pipe:1", format="gif", loop=0)


def _poster(src: str, fps: int):
    # Only the first frame is decoded: the poster costs milliseconds whatever the clip length.
    return _source(src, fps).video.output("pipe:1", format="image2pipe", frames=1, **{"c:v": "png", "pix_fmt": "rgba"})


_BUILDERS = {"webm": _webm, "webp": _webp, "gif": _gif, "poster": _poster}


def build_command(fmt: str, src: str, fps: int) -> list[str]:
    """Full ffmpeg argv that encodes the RGBA clip at ``src`` as ``fmt`` to stdout."""
    try:
        builder = _BUILDERS[fmt]
    except KeyError:
        raise ValueError(f"unknown web format {fmt!r}; expected one of {WEB_FORMATS}") from None
    argv = builder(src, fps).global_args(*QUIET_GLOBAL_ARGS).compile(cmd=ffmpeg_executable())
    # Published files carry no metadata from the source (titles, tags, creation times): output
    # options go right before the output.
    at = argv.index("pipe:1")
    return [*argv[:at], "-map_metadata", "-1", "-map_chapters", "-1", *argv[at:]]


def _encode_one(fmt: str, src: str, fps: int,
                open_output: Callable[[str], AbstractContextManager[BinaryIO]], name: str, nice: int = 0) -> EncodedAsset:
    argv = build_command(fmt, src, fps)
    started = time.perf_counter()
    with open_output(name) as sink:
        try:
            _, bytes_written, _ = run_ffmpeg(argv, sink.write, chunk_size=STREAM_CHUNK_BYTES, nice=nice)
        except MediaError as exc:
            raise MediaError(f"encoding {name} from {src} failed", argv=exc.argv, returncode=exc.returncode,
                             stderr_tail=exc.stderr_tail) from exc
    return EncodedAsset(name=name, content_type=CONTENT_TYPES[fmt], bytes_written=bytes_written,
                        seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class Clip:
    """One source clip and what to make of it: its formats, their output names, and a prefix for
    the keys its assets are returned under (e.g. ``walk_`` for the walk loop)."""

    src: str
    formats: Sequence[str]
    names: Mapping[str, str] = field(default_factory=lambda: OUTPUT_NAMES)
    key_prefix: str = ""


# Relative encode time of each format on our clips (bench/bench_transcode.py). The slowest start
# first, so the last encoder still running is a short one.
_COST = {"webp": 2.0, "gif": 1.0, "webm": 1.0, "poster": 0.1}


def transcode_clips(clips: Sequence[Clip], open_output: Callable[[str], AbstractContextManager[BinaryIO]], fps: int,
                    parallel: int = 2, nice: int = 0) -> dict[str, EncodedAsset]:
    """Encode every clip into each of its formats, streaming each result into
    ``open_output(clip.names[format])``; up to ``parallel`` encoders run at once, across clips,
    ``nice`` steps below this process's CPU priority.

    Returns the encoded assets keyed by ``clip.key_prefix + format``. The first failure cancels
    encoders not yet started and is raised (a :class:`MediaError` carrying ffmpeg's stderr tail);
    encoders already running are allowed to finish, so no writer is left open.
    """
    unknown = [fmt for clip in clips for fmt in clip.formats if fmt not in _BUILDERS]
    if unknown:
        raise ValueError(f"unknown web formats {unknown}; expected a subset of {WEB_FORMATS}")
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    jobs = [(clip.key_prefix + fmt, fmt, clip) for clip in clips for fmt in dict.fromkeys(clip.formats)]
    with ThreadPoolExecutor(max_workers=min(parallel, len(jobs) or 1), thread_name_prefix="transcode") as pool:
        futures = {
            key: pool.submit(_encode_one, fmt, clip.src, fps, open_output, clip.names[fmt], nice)
            for key, fmt, clip in sorted(jobs, key=lambda job: -_COST[job[1]])
        }
        done, pending = wait(futures.values(), return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        failed = [future for future in done if future.exception() is not None]
        if failed:
            raise failed[0].exception()
    return {key: futures[key].result() for key, _, _ in jobs}


def transcode(src: str, open_output: Callable[[str], AbstractContextManager[BinaryIO]], fps: int,
              formats: Sequence[str] = WEB_FORMATS, parallel: int = 2,
              names: Mapping[str, str] = OUTPUT_NAMES) -> dict[str, EncodedAsset]:
    """Encode the RGBA clip at ``src`` into each of ``formats`` (see :func:`transcode_clips`);
    the assets are keyed by format."""
    return transcode_clips([Clip(src, formats, names)], open_output, fps, parallel)
