"""The real vision stages through the server, chained by URL as the generation DAG chains them."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from tests.model_server.conftest import ModelServerProcess


def run(srv: ModelServerProcess, model_id: str, body: dict, timeout: float = 90) -> dict:
    submitted = srv.submit(model_id, body)
    status = srv.wait_for(submitted, timeout=timeout)
    response = srv.client.get(submitted["response_url"])
    assert response.status_code == 200, (status, response.text)
    assert status["metrics"]["inference_time"] > 0
    assert status["logs"], "every stage logs its progress"
    return response.json()


def download(srv: ModelServerProcess, file: dict) -> bytes:
    assert set(file) == {"url", "content_type", "file_name", "file_size"}
    assert file["url"].startswith(f"{srv.url}/files/")
    response = srv.client.get(file["url"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(file["content_type"])
    assert len(response.content) == file["file_size"]
    return response.content


@pytest.fixture(scope="module")
def astronaut_jpeg(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    Image.fromarray(skimage_data.astronaut()).save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def chain(server: ModelServerProcess, astronaut_jpeg) -> dict:
    """moderate -> analyze -> cartoonize -> [expand] -> segment-image, each stage reading the
    previous one's output URL as the DAG passes them on. Run once per module (the stages are too
    slow to run twice); whichever test asks first runs it, so each test runs alone as well."""
    photo = astronaut_jpeg.read_bytes()
    results = {"moderation": run(server, "bitbuddies/moderate",
                                 {"image_url": "data:image/jpeg;base64," + base64.b64encode(photo).decode()})}
    analysis = results["analysis"] = run(server, "bitbuddies/analyze", {"image_url": astronaut_jpeg.as_uri()})
    cartoon = results["cartoon"] = run(server, "bitbuddies/cartoonize", {"image_url": analysis["image"]["url"], "prompt": "bold"})
    image_url = cartoon["image"]["url"]
    if analysis["cut_off"]:
        image_url = run(server, "bitbuddies/expand-full-body", {"image_url": image_url, "prompt": "bold"})["image"]["url"]
    results["segmented"] = run(server, "bitbuddies/segment-image", {"image_url": image_url})
    return results


@pytest.mark.slow
def test_moderate_analyze_cartoonize_segment_chain(server: ModelServerProcess, chain: dict) -> None:
    from model_server.vision.imageio import read_png_meta

    moderation, analysis = chain["moderation"], chain["analysis"]
    assert moderation["nsfw"] is False and isinstance(moderation["labels"], list)
    assert analysis["subject"] == "person"
    assert (analysis["width"], analysis["height"]) == (512, 512)
    assert analysis["rotation"] == 0
    x, y, w, h = analysis["box"]
    assert 0 <= x < x + w <= 512 and 0 <= y < y + h <= 512 and w * h > 0.05 * 512 * 512
    analyzed_png = download(server, analysis["image"])
    assert read_png_meta(analyzed_png)["subject"] == "person"

    cartoon_png = download(server, chain["cartoon"]["image"])
    assert read_png_meta(cartoon_png)["subject"] == "person", "the analysis meta travels with the image"

    segmented = chain["segmented"]
    with Image.open(io.BytesIO(download(server, segmented["image"]))) as img:
        assert img.mode == "RGBA"
        alpha = np.asarray(img)[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255
    with Image.open(io.BytesIO(download(server, segmented["mask"]))) as mask_img:
        mask = np.asarray(mask_img.convert("L"), dtype=np.float32) / 255.0
    assert 0.05 < mask.mean() < 0.8, "the astronaut fills a part of the photo, not all or none of it"


@pytest.mark.slow
def test_animate_then_segment_video(server: ModelServerProcess, chain: dict) -> None:
    animation = run(server, "bitbuddies/animate",
                    {"image_url": chain["segmented"]["image"]["url"], "prompt": "wave", "duration": 1, "fps": 8, "size": 128})
    assert animation["num_frames"] == 8 and animation["fps"] == 8
    assert animation["motion"] == "wave"  # read from the prompt
    chosen = run(server, "bitbuddies/animate",
                 {"image_url": chain["segmented"]["image"]["url"], "prompt": "wave", "motion": "jump", "duration": 1, "fps": 8, "size": 128})
    assert chosen["motion"] == "jump"  # the motion chosen in the web app wins over the prompt
    assert animation["video"]["file_name"].endswith(".mkv")
    assert animation["key_color"].startswith("#") and len(animation["key_color"]) == 7
    assert animation["walk_video"]["file_name"] == "walk.mkv", "every buddy gets a walk loop"
    keyed = run(server, "bitbuddies/segment-video",
                {"video_url": animation["video"]["url"], "key_color": animation["key_color"],
                 "walk_video_url": animation["walk_video"]["url"]})
    assert keyed["num_frames"] == 8 and keyed["fps"] == 8

    from include.media.frames import read_frames_video

    video_path = server.var_dir / "model_server" / "files" / keyed["video"]["url"].split("/files/")[1]
    assert len(download(server, keyed["video"])) == video_path.stat().st_size
    frames = read_frames_video(str(video_path), rgba=True)
    assert frames.shape == (8, 128, 128, 4)
    assert frames[..., 3].min() == 0 and frames[..., 3].max() == 255, "the key colour became transparent"
    walk_path = server.var_dir / "model_server" / "files" / keyed["walk_video"]["url"].split("/files/")[1]
    walk = read_frames_video(str(walk_path), rgba=True)
    assert walk.shape == (8, 128, 128, 4) and walk[..., 3].max() == 255
    assert np.abs(walk[..., 3].astype(int) - frames[..., 3]).mean() > 1, "the walk is its own loop"


def test_no_subject_fails_as_a_business_error(server: ModelServerProcess) -> None:
    flat = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(flat, format="PNG")
    submitted = server.submit("bitbuddies/analyze",
                              {"image_url": "data:image/png;base64," + base64.b64encode(flat.getvalue()).decode()})
    server.wait_for(submitted)
    response = server.client.get(submitted["response_url"])
    assert response.status_code == 422
    assert response.json()["error_type"] in ("no_usable_subject", "subject_too_small")

    broken = server.submit("bitbuddies/analyze", {"image_url": "data:image/png;base64,bm90IGFuIGltYWdl"})
    server.wait_for(broken)
    assert server.client.get(broken["response_url"]).json()["error_type"] == "invalid_image"
    missing = server.submit("bitbuddies/analyze", {"image_url": "file:///nonexistent/photo.jpg"})
    server.wait_for(missing)
    assert server.client.get(missing["response_url"]).json()["error_type"] == "invalid_input"
