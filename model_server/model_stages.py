"""The models the local server offers: each one's input schema and the stage handler that runs it.

Handlers run inside a worker process (see ``worker_process``; their context is ``job_context``): they fetch inputs, call the
vision and media functions, write outputs under the job's files folder and return the
result JSON, shaped like fal.ai results (File objects with url, content_type, file_name,
file_size). Vision and media modules are imported inside the handlers so that the server
process itself never loads a model.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator

from include.stages import MODEL_IDS
from model_server.input_fetch import SCHEMES, InputError
from model_server.job_context import INTERNAL_ERROR, JobContext, JobFailure

ANIMATION_FILE, WALK_FILE = "animation.mkv", "walk.mkv"


def _check_url(url: str) -> str:
    if not url.startswith(SCHEMES):
        raise ValueError("must be an http(s)://, data: or file:// URL")
    return url


class ImageInput(BaseModel):
    image_url: str

    _url = field_validator("image_url")(_check_url)


class PromptedImageInput(ImageInput):
    prompt: str = ""


class AnimateInput(PromptedImageInput):
    motion: str = ""  # one of model_server.vision.prompt.MOTIONS; empty: read from the prompt
    duration: float = Field(5.0, gt=0, le=30)
    fps: int = Field(24, ge=1, le=60)
    size: int = Field(512, ge=64, le=2048)


class SegmentVideoInput(BaseModel):
    video_url: str
    key_color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")
    # Frame rate of the output; read from the input video when not given.
    fps: int | None = Field(None, ge=1, le=120)
    # The walk loop on the same key colour, segmented alongside; empty when there is none.
    walk_video_url: str | None = None

    _url = field_validator("video_url")(_check_url)

    @field_validator("walk_video_url")
    @classmethod
    def _walk_url(cls, url: str | None) -> str | None:
        return _check_url(url) if url else None


class SelftestInput(BaseModel):
    seconds: float = Field(0.0, ge=0, le=3600)
    fail: str | None = None
    # HTTP status of the failure; by default "internal_error" answers 500 and anything else 422.
    fail_status: int | None = Field(None, ge=400, le=599)


@dataclass(frozen=True)
class ModelSpec:
    input_model: type[BaseModel]
    handler: Callable[[JobContext, Any], dict[str, Any]]


def business_error_of(exc: BaseException) -> tuple[str, str] | None:
    """(error_type, message) when ``exc`` says the input can never succeed, else None."""
    if isinstance(exc, InputError):
        return exc.code, exc.message
    try:
        from model_server.vision.errors import VisionError
    except ImportError:  # vision package absent: no business errors can come from it
        return None
    if isinstance(exc, VisionError):
        return exc.code, exc.message
    return None


# -- handlers --------------------------------------------------------------------------------

def run_moderate(ctx: JobContext, inp: ImageInput) -> dict[str, Any]:
    from model_server.vision.imageio import decode_image
    from model_server.vision.moderation import moderate

    rgb, _ = decode_image(ctx.fetch(inp.image_url))
    ctx.log(f"Decoded image {rgb.shape[1]}x{rgb.shape[0]}")
    report = moderate(rgb)
    ctx.log(f"Moderation: nsfw={report.nsfw} score={report.score:.3f}")
    return {"nsfw": bool(report.nsfw), "score": float(report.score), "labels": list(report.labels)}


def run_analyze(ctx: JobContext, inp: ImageInput) -> dict[str, Any]:
    from model_server.vision.analysis import analyze
    from model_server.vision.imageio import decode_image, encode_png

    rgb, exif_rotation = decode_image(ctx.fetch(inp.image_url))
    ctx.log(f"Decoded image {rgb.shape[1]}x{rgb.shape[0]}, EXIF rotation {exif_rotation}")
    analysis = analyze(rgb)
    ctx.log(f"Found a {analysis.subject}, cut off: {analysis.cut_off}")
    meta = analysis.meta()
    meta["exif_rotation"] = exif_rotation
    image = ctx.save_file("analyzed.png", encode_png(analysis.image, meta))
    height, width = analysis.image.shape[:2]
    return {
        "image": image,
        "subject": analysis.subject,
        "box": [int(v) for v in analysis.box],
        "cut_off": bool(analysis.cut_off),
        "missing": list(analysis.missing),
        # Total clockwise turn applied to the uploaded pixels: EXIF first, then content.
        "rotation": (exif_rotation + analysis.rotation) % 360,
        "width": int(width),
        "height": int(height),
    }


def run_cartoonize(ctx: JobContext, inp: PromptedImageInput) -> dict[str, Any]:
    from model_server.vision.cartoon import cartoonize
    from model_server.vision.imageio import decode_image, encode_png, read_png_meta
    from model_server.vision.prompt import parse_prompt

    data = ctx.fetch(inp.image_url)
    rgb, _ = decode_image(data)
    style = parse_prompt(inp.prompt).style
    ctx.log(f"Cartoonizing {rgb.shape[1]}x{rgb.shape[0]} in style {style!r}")
    out, meta = cartoonize(rgb, read_png_meta(data), style)
    return {"image": ctx.save_file("cartoon.png", encode_png(out, meta))}


def run_expand_full_body(ctx: JobContext, inp: PromptedImageInput) -> dict[str, Any]:
    from model_server.vision.cartoon import expand_full_body
    from model_server.vision.imageio import decode_image, encode_png, read_png_meta

    data = ctx.fetch(inp.image_url)
    rgb, _ = decode_image(data)
    ctx.log(f"Expanding {rgb.shape[1]}x{rgb.shape[0]} to a full body")
    out, meta = expand_full_body(rgb, read_png_meta(data))
    return {"image": ctx.save_file("full_body.png", encode_png(out, meta))}


def run_segment_image(ctx: JobContext, inp: ImageInput) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from model_server.vision.imageio import decode_image, encode_png, read_png_meta
    from model_server.vision.quality import check_cutout
    from model_server.vision.segmentation import cutout, cutout_meta, segment_subject

    data = ctx.fetch(inp.image_url)
    rgb, _ = decode_image(data)
    meta = read_png_meta(data)
    ctx.log(f"Segmenting {rgb.shape[1]}x{rgb.shape[0]}")
    alpha = segment_subject(rgb, meta)
    figures = check_cutout(rgb, alpha)  # a rectangle or a mostly-background cut-out is never published
    rgba = cutout(rgb, alpha)
    ctx.log("Cut-out quality: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    # The cut-out is cropped: its meta (landmarks, box, drawn regions) moves to its coordinates.
    image = ctx.save_file("cutout.png", encode_png(rgba, cutout_meta(meta, alpha)))
    mask_png = io.BytesIO()
    Image.fromarray(np.clip(np.asarray(alpha) * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").save(
        mask_png, format="PNG", compress_level=3
    )
    return {"image": image, "mask": ctx.save_file("mask.png", mask_png.getvalue())}


def run_animate(ctx: JobContext, inp: AnimateInput) -> dict[str, Any]:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from include.media.frames import write_frames_video
    from model_server.vision.animation import WALK, iter_loops
    from model_server.vision.errors import INVALID_IMAGE, VisionError
    from model_server.vision.imageio import read_png_meta
    from model_server.vision.matting import composite_on_key, pick_key_color
    from model_server.vision.prompt import MOTIONS, parse_prompt

    data = ctx.fetch(inp.image_url)
    # decode_image flattens transparency onto white; the animation needs the cut-out's alpha.
    try:
        with Image.open(io.BytesIO(data)) as img:
            rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise VisionError(INVALID_IMAGE, "We couldn't read the cut-out image.") from exc
    meta = read_png_meta(data)
    motion = inp.motion if inp.motion in MOTIONS else parse_prompt(inp.prompt).motion
    ctx.log(f"Animating {motion!r}: {inp.duration} s at {inp.fps} fps, {inp.size} px")
    key = pick_key_color(rgba)
    files = {motion: ANIMATION_FILE, WALK: WALK_FILE}
    num_frames = 0

    def write(name: str, frames) -> None:
        write_frames_video(composite_on_key(frames, key), str(ctx.output_path(files[name])), inp.fps)

    # Every buddy also gets a walk loop (the embed widget walks it across a page); one rig serves
    # both. Each loop is composited and encoded on a thread while the next one renders.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="animate") as pool:
        writes = []
        for name, frames in iter_loops(rgba, meta, (motion, WALK), inp.duration, inp.fps, inp.size):
            num_frames = num_frames or len(frames)
            writes.append(pool.submit(write, name, frames))
        for done in writes:
            done.result()
    ctx.log(f"Rendered {num_frames} frames of {motion!r} and of the walk; key colour {_hex(key)}")
    return {
        "video": ctx.file_info(ANIMATION_FILE),
        "walk_video": ctx.file_info(WALK_FILE),
        "key_color": _hex(key),
        "fps": inp.fps,
        "num_frames": int(num_frames),
        "motion": motion,
    }


def run_segment_video(ctx: JobContext, inp: SegmentVideoInput) -> dict[str, Any]:
    from include.media.frames import probe_header, read_frames_video, write_frames_video
    from model_server.vision.matting import key_matte

    key = tuple(int(inp.key_color[i:i + 2], 16) for i in (1, 3, 5))
    clips = [("video", inp.video_url, "segmented.mkv")]
    if inp.walk_video_url:
        clips.append(("walk_video", inp.walk_video_url, "walk_segmented.mkv"))

    def segment(field: str, url: str, name: str) -> tuple[int, int]:
        source = ctx.output_path(f"input-{field}.mkv")
        source.write_bytes(ctx.fetch(url))
        header = probe_header(str(source))
        frames = read_frames_video(str(source), rgba=False, header=header)
        fps = inp.fps or int(round(float(header["fps"])))
        ctx.log(f"Decoded {len(frames)} frames of the {field.replace('_', ' ')} at {fps} fps")
        write_frames_video(key_matte(frames, key), str(ctx.output_path(name)), fps)
        # The downloaded input is not a result; keep only what the response names.
        source.unlink(missing_ok=True)
        ctx.log(f"Encoded the RGBA video {name}")
        return fps, len(frames)

    # The clips are independent: on two cores both are segmented at once.
    with ThreadPoolExecutor(max_workers=len(clips), thread_name_prefix="segment") as pool:
        done = [pool.submit(segment, *clip) for clip in clips]
        (fps, num_frames), *_ = [future.result() for future in done]
    return {**{field: ctx.file_info(name) for field, _, name in clips}, "num_frames": int(num_frames), "fps": fps}


def run_selftest(ctx: JobContext, inp: SelftestInput) -> dict[str, Any]:
    ctx.log(f"Selftest: sleeping {inp.seconds} s")
    time.sleep(inp.seconds)
    if inp.fail:
        status = inp.fail_status or (500 if inp.fail == INTERNAL_ERROR else 422)
        raise JobFailure(inp.fail, f"Selftest failure: {inp.fail}", status)
    ctx.log("Selftest: done")
    return {"ok": True}


def _hex(rgb: tuple[int, int, int] | Any) -> str:
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


# Per pipeline stage (include/stages.py declares the stages and their model ids).
HANDLERS: dict[str, ModelSpec] = {
    "moderate": ModelSpec(ImageInput, run_moderate),
    "analyze": ModelSpec(ImageInput, run_analyze),
    "cartoonize": ModelSpec(PromptedImageInput, run_cartoonize),
    "expand_full_body": ModelSpec(PromptedImageInput, run_expand_full_body),
    "segment_image": ModelSpec(ImageInput, run_segment_image),
    "animate": ModelSpec(AnimateInput, run_animate),
    "segment_video": ModelSpec(SegmentVideoInput, run_segment_video),
    "selftest": ModelSpec(SelftestInput, run_selftest),
}
# Model id -> its handler: what the server offers.
MODELS: dict[str, ModelSpec] = {MODEL_IDS[stage]: spec for stage, spec in HANDLERS.items()}
