"""Intermediate frame videos exchanged between model stages.

Stages (animate, segment video) hand each other whole clips as files in object storage. The
exchange format is Ut Video in Matroska: lossless, so a mask or a colour survives any number of
hops bit for bit, and fast: on 2 cores a 120-frame 512-px RGBA clip encodes in ~0.3 s and
decodes in ~0.25 s, where FFV1 (level 3, about 2.4x smaller) took ~0.7 s and ~0.6 s; these clips
sit on the user's critical path several times per buddy and travel only between local
processes, so speed wins over size (``bench/bench_transcode.py``). RGB clips are stored as
planar ``gbrp`` and RGBA clips as ``gbrap``; the rgb24/rgba <-> planar conversion is a lossless
channel shuffle. Every frame is a keyframe (one packet per frame), which the frame count relies on.

This module owns writing frames to such a video, reading them back as numpy arrays, and
probing a video's size, rate and frame count. Sources may be local paths or http(s) URLs.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import ffmpeg
import numpy as np

from include.media.runner import (
    QUIET_GLOBAL_ARGS,
    MediaError,
    ffmpeg_executable,
    run_ffmpeg,
    source_input_options,
)

# channels -> (pixel format of the raw frames we exchange with ffmpeg, pixel format stored in Ut Video)
_PIXEL_FORMATS = {3: ("rgb24", "gbrp"), 4: ("rgba", "gbrap")}
INTERMEDIATE_CODEC = "utvideo"

# VP9 carries alpha as a side channel that only libvpx decodes; ffmpeg's native VP9 decoder
# silently returns opaque frames. Any VP9 source is therefore decoded with libvpx.
_DECODERS_KEEPING_ALPHA = {"vp9": "libvpx-vp9"}


def _frames_of(frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(f"expected frames shaped (N, H, W, 3|4), got {frames.shape}")
        return iter(frames)
    return iter(frames)


def _check_frame(frame: np.ndarray, expected_shape: tuple[int, ...] | None) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 numpy arrays, got {getattr(frame, 'dtype', type(frame))}")
    if expected_shape is None:
        if frame.ndim != 3 or frame.shape[2] not in _PIXEL_FORMATS:
            raise ValueError(f"a frame must be shaped (H, W, 3) or (H, W, 4), got {frame.shape}")
    elif frame.shape != expected_shape:
        raise ValueError(f"all frames must share one shape: {frame.shape} after {expected_shape}")


def build_write_command(width: int, height: int, channels: int, fps: int, target: str) -> list[str]:
    """argv that reads raw RGB(A) frames on stdin and writes lossless Ut Video/Matroska to ``target``
    (a path, or ``pipe:1`` for stdout)."""
    raw_pix_fmt, stored_pix_fmt = _PIXEL_FORMATS[channels]
    stream = ffmpeg.input("pipe:0", format="rawvideo", pix_fmt=raw_pix_fmt, s=f"{width}x{height}", framerate=fps)
    # Ut Video is intra-only: every frame is a keyframe and one packet.
    output_options = {"c:v": INTERMEDIATE_CODEC, "pix_fmt": stored_pix_fmt, "f": "matroska"}
    return stream.output(target, **output_options).global_args("-y", *QUIET_GLOBAL_ARGS).compile(
        cmd=ffmpeg_executable())


def write_frames_video(frames: np.ndarray | Iterable[np.ndarray], out: BinaryIO | str, fps: int) -> None:
    """Encode ``(N, H, W, 3)`` RGB or ``(N, H, W, 4)`` RGBA uint8 frames losslessly.

    ``out`` is a file path (ffmpeg writes it) or a writable binary file object that receives
    the Matroska stream in chunks as ffmpeg produces it. Frames are streamed to ffmpeg's stdin
    one at a time, so an iterable of frames never needs to be materialised.
    """
    iterator = _frames_of(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError("no frames to write") from None
    _check_frame(first, None)
    shape = first.shape
    height, width, channels = shape

    def frame_buffers() -> Iterator[memoryview]:
        for frame in itertools.chain([first], iterator):
            _check_frame(frame, shape)
            yield memoryview(np.ascontiguousarray(frame)).cast("B")

    if isinstance(out, (str, os.PathLike)):
        argv = build_write_command(width, height, channels, fps, os.fspath(out))
        run_ffmpeg(argv, None, stdin_buffers=frame_buffers())
    else:
        argv = build_write_command(width, height, channels, fps, "pipe:1")
        run_ffmpeg(argv, out.write, stdin_buffers=frame_buffers())


# A video stream line of ffmpeg's input listing, e.g.
#   Stream #0:0: Video: utvideo (ULRA / 0x41524C55), gbrap, 512x512, SAR 1:1 DAR 1:1, 24 fps, 24 tbr, 1k tbn
_VIDEO_STREAM = re.compile(r"Stream #0:\d+.*?: Video: (?P<codec>\w+)(?P<rest>.*)")
_SIZE = re.compile(r"\b(?P<w>\d+)x(?P<h>\d+)\b")
_RATE = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<k>k?) (?P<unit>fps|tbr)\b")
_PIX_FMT = re.compile(r"^\s*(?:\([^)]*\)\s*)?,\s*(?P<pix_fmt>\w+)")


def _parse_stream_listing(text: str, src: str) -> dict:
    """Pull codec, size, rate and pixel format of the first video stream out of ffmpeg's
    input listing (the bundled binary has no ffprobe)."""
    for line in text.splitlines():
        match = _VIDEO_STREAM.search(line)
        if not match:
            continue
        rest = match["rest"]
        size = _SIZE.search(rest)
        if not size:
            continue
        rates = {m["unit"]: float(m["value"]) * (1000 if m["k"] else 1) for m in _RATE.finditer(rest)}
        pix_fmt = _PIX_FMT.search(rest)
        return {
            "codec": match["codec"],
            "pix_fmt": pix_fmt["pix_fmt"] if pix_fmt else "",
            "width": int(size["w"]),
            "height": int(size["h"]),
            "fps": rates.get("fps", rates.get("tbr", 0.0)),
        }
    raise MediaError(f"no video stream found in {src}", stderr_tail="\n".join(text.splitlines()[-20:]))


def probe_header(src: str) -> dict:
    """Codec, pixel format, size and frame rate of ``src`` from its container header alone
    (nothing is decoded; no frame count: see :func:`probe_frames`)."""
    # Without an output ffmpeg lists the input and exits 1 by design; the listing is at info level.
    argv = [ffmpeg_executable(), "-hide_banner", "-nostdin"]
    for option, value in source_input_options(src).items():
        argv += [f"-{option}", str(value)]
    argv += ["-i", src]
    _, _, stderr = run_ffmpeg(argv, None, keep_stderr=True, check=False)
    return _parse_stream_listing(stderr, src)


def build_count_command(src: str) -> list[str]:
    """argv that copies the first video stream of ``src`` to the null muxer (packets are
    counted, nothing is decoded) and reports progress as key=value lines on stdout."""
    return (
        ffmpeg.input(src, **source_input_options(src))["v:0"]
        .output("-", format="null", c="copy")
        .global_args("-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1")
        .compile(cmd=ffmpeg_executable())
    )


def probe_frames(src: str) -> dict:
    """Describe the video at ``src`` (path or URL).

    Returns ``{"width", "height", "fps", "frames", "codec", "pix_fmt"}``. The frame count comes
    from walking the packets: piped Matroska/WebM carries no duration index, and intra-only
    Ut Video and our VP9 (no alt-ref frames) have one frame per packet.
    """
    collected = bytearray()
    _, _, stderr = run_ffmpeg(build_count_command(src), collected.extend, keep_stderr=True)
    info = _parse_stream_listing(stderr, src)
    counts = re.findall(r"^frame=(\d+)$", collected.decode("ascii", "replace"), flags=re.MULTILINE)
    if not counts:
        raise MediaError(f"ffmpeg reported no frame count for {src}", stderr_tail=stderr[-2000:])
    info["frames"] = int(counts[-1])
    return info


def build_read_command(src: str, rgba: bool, codec: str = "") -> list[str]:
    """argv that decodes the first video stream of ``src`` to raw rgba/rgb24 frames on stdout,
    exactly one output frame per decoded frame."""
    input_options = source_input_options(src)
    if codec in _DECODERS_KEEPING_ALPHA:
        input_options["c:v"] = _DECODERS_KEEPING_ALPHA[codec]
    return (
        ffmpeg.input(src, **input_options)["v:0"]
        .output("pipe:1", format="rawvideo", pix_fmt="rgba" if rgba else "rgb24", fps_mode="passthrough")
        .global_args(*QUIET_GLOBAL_ARGS)
        .compile(cmd=ffmpeg_executable())
    )


def read_frames_video(src: str, rgba: bool, header: dict | None = None) -> np.ndarray:
    """Decode the video at ``src`` (path or http(s) URL) to ``(N, H, W, 4 if rgba else 3)`` uint8.

    Works for the Ut Video intermediates and for the web deliverables (VP9 is decoded with libvpx
    so its alpha channel is kept). ``header`` is :func:`probe_header`'s answer when the caller has it.
    """
    header = header or probe_header(src)
    width, height = header["width"], header["height"]
    raw = bytearray()
    run_ffmpeg(build_read_command(src, rgba, header["codec"]), raw.extend)
    channels = 4 if rgba else 3
    frame_bytes = width * height * channels
    if len(raw) % frame_bytes:
        raise MediaError(f"decoded {len(raw)} bytes from {src}, not a whole number of {width}x{height} frames")
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, channels)
