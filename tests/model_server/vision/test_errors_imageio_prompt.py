"""Tests for model_server/vision/errors.py, imageio.py and prompt.py."""

import io

import numpy as np
import pytest
from PIL import Image

from model_server.vision.errors import VisionError
from model_server.vision.imageio import decode_image, encode_png, read_png_meta
from model_server.vision.prompt import parse_prompt


def test_exif_rotated_jpeg_is_put_upright():
    tall = np.zeros((80, 40, 3), np.uint8)
    tall[:20] = (255, 0, 0)  # red at the top of the upright picture
    # Store it as a camera would: pixels turned, Orientation 6 says "rotate 90° clockwise to view".
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(tall, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", exif=exif, quality=95)
    rgb, rotation = decode_image(buf.getvalue())
    assert rotation == 90
    assert rgb.shape == (80, 40, 3)
    assert rgb[:20, :, 0].mean() > 200 and rgb[-20:, :, 0].mean() < 50


def test_invalid_bytes_raise_invalid_image():
    with pytest.raises(VisionError) as err:
        decode_image(b"definitely not a photo")
    assert err.value.code == "invalid_image" and "photo" in err.value.message


def test_png_meta_round_trip():
    rgba = np.zeros((4, 5, 4), np.uint8)
    data = encode_png(rgba, {"box": [1, 2, 3, 4], "subject": "person"})
    assert read_png_meta(data) == {"box": [1, 2, 3, 4], "subject": "person"}
    assert read_png_meta(encode_png(rgba[..., :3])) == {}


@pytest.mark.parametrize(
    "prompt, motion, style",
    [
        ("", "bounce", "classic"),
        ("say hello to everyone", "wave", "classic"),
        ("hop around in pastel colours", "jump", "pastel"),
        ("party time, bold!", "dance", "bold"),
        ("groove like a comic hero", "dance", "comic"),
        ("highway chill", "sway", "classic"),  # "highway" must not read as "hi"
    ],
)
def test_parse_prompt(prompt, motion, style):
    direction = parse_prompt(prompt)
    assert (direction.motion, direction.style) == (motion, style)
