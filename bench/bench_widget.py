"""Benchmark of the embed widget: what a page pays for a walking buddy, with versus without it.

One run, side by side: the same hand-written page (a paragraph of text) is opened in headless
Chromium bare, with the two-line embed snippet, and with the snippet under reduced motion (the
idle loop playing in place: the video's own share), and each is sampled for a few seconds while
it is visible. Reported per page: the main thread's busy time per second
(CDP ``Performance.getMetrics`` ``TaskDuration`` and ``ScriptDuration`` deltas over the window),
layouts and style recalculations per second, and the JS heap in use after a garbage collection.

The buddy is real media: a cartoon clip (``bench_transcode.cartoon_clip``) encoded by the
pipeline's own transcode into WebM/WebP/GIF/PNG, published in a private var dir and served by
the API (``uvicorn api.main:app``) on a free port; the page comes from another port.

Run: ``.venv/bin/python -m bench.bench_widget [--seconds 5]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A site</title>
<style>body {{ margin: 0; padding: 2rem; font: 16px/1.5 Georgia, serif; background: #cfe8ff; }}</style></head>
<body><h1>A site that is not BitBuddies</h1><p>{text}</p>
{snippet}
</body></html>
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def publish_demo_buddy(var_dir: Path) -> str:
    """Encode a cartoon clip into web assets under ``var_dir`` and publish it; returns its slug."""
    os.environ["BITBUDDIES_VAR_DIR"] = str(var_dir)
    from bench.bench_transcode import FPS, cartoon_clip
    from include import generations, storage
    from include.db import session_scope
    from include.migrations import migrate
    from include.media.frames import write_frames_video
    from include.media.transcode import OUTPUT_NAMES, transcode
    from include.models import Generation, User
    from include.settings import get_settings

    get_settings.cache_clear()
    migrate()
    with session_scope() as session:
        user = User(email="bench@example.com")
        session.add(user)
        session.flush()
        generation = Generation(user_id=user.id, prompt="walk along", upload_path="uploads/bench/photo.jpg")
        session.add(generation)
    source = var_dir / "clip.mkv"
    # 3 s at 256 px: encodes in seconds, and the widget shows it at 120 px anyway.
    write_frames_video(cartoon_clip(frames=3 * FPS, size=256), str(source), fps=FPS)
    kind_by_name = {name: kind for kind, name in OUTPUT_NAMES.items()}
    transcode(str(source), lambda name: storage.open_write(generations.asset_key(generation.id, kind_by_name[name])), FPS)
    published = generations.mark_succeeded(generation.id, {kind: generations.asset_key(generation.id, kind) for kind in OUTPUT_NAMES})
    return published.slug


@contextlib.contextmanager
def serve_api(var_dir: Path) -> Iterator[str]:
    """``uvicorn api.main:app`` on a free port over ``var_dir``; yields its base URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "BITBUDDIES_VAR_DIR": str(var_dir), "BITBUDDIES_PUBLIC_BASE_URL": url, "BITBUDDIES_API_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(var_dir / "api.log", "wb"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/embed.js", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the API did not start; see {var_dir / 'api.log'}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def sample(page, seconds: float) -> dict[str, float]:
    """Main-thread and heap figures of ``page`` over ``seconds`` (CDP Performance domain)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def metrics() -> dict[str, float]:
        return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}

    before = metrics()
    time.sleep(seconds)
    after = metrics()
    cdp.send("HeapProfiler.collectGarbage")
    heap = metrics()["JSHeapUsedSize"]
    elapsed = after["Timestamp"] - before["Timestamp"]

    def per_second(name: str, scale: float = 1.0) -> float:
        return (after[name] - before[name]) * scale / elapsed

    return {
        "task_ms_per_s": per_second("TaskDuration", 1000),
        "script_ms_per_s": per_second("ScriptDuration", 1000),
        "layouts_per_s": per_second("LayoutCount"),
        "style_recalcs_per_s": per_second("RecalcStyleCount"),
        "heap_mb": heap / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="sampling window per page")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after load before sampling")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM_ARGS, DESKTOP, chromium_path
    from tests.fakes.static_site import serve_pages

    with tempfile.TemporaryDirectory(prefix="bench-widget-") as tmp:
        var_dir = Path(tmp)
        started = time.perf_counter()
        slug = publish_demo_buddy(var_dir)
        print(f"demo buddy encoded and published in {time.perf_counter() - started:.1f} s")
        with serve_api(var_dir) as api_url:
            snippet = f'<script src="{api_url}/embed.js" async></script>\n<bit-buddy slug="{slug}"></bit-buddy>'
            text = "Lorem ipsum dolor sit amet. " * 40
            pages = {"bare.html": PAGE.format(text=text, snippet=""), "widget.html": PAGE.format(text=text, snippet=snippet)}
            with serve_pages(pages) as site, sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                results = {}
                for name, file, motion in (
                    ("bare", "bare", "no-preference"),
                    ("widget", "widget", "no-preference"),
                    ("still", "widget", "reduce"),
                ):
                    context = browser.new_context(viewport=DESKTOP, reduced_motion=motion)
                    page = context.new_page()
                    page.goto(f"{site}/{file}.html")
                    if file == "widget":
                        page.wait_for_function(
                            "() => { const v = document.querySelector('bit-buddy')?.shadowRoot?.querySelector('video');"
                            " return v && v.readyState >= 3 && !v.paused; }",
                            timeout=30000,
                        )
                    time.sleep(args.warmup)
                    results[name] = sample(page, args.seconds)
                    context.close()
                browser.close()
    print(f"\nheadless Chromium, {DESKTOP['width']}x{DESKTOP['height']}, {args.seconds:.0f} s window after {args.warmup:.0f} s warm-up")
    print(f"{'':22s}{'bare page':>12s}{'with widget':>14s}{'reduced motion':>16s}")
    for key, label in (
        ("task_ms_per_s", "main thread ms/s"),
        ("script_ms_per_s", "script ms/s"),
        ("layouts_per_s", "layouts/s"),
        ("style_recalcs_per_s", "style recalcs/s"),
        ("heap_mb", "JS heap MB"),
    ):
        print(f"{label:22s}{results['bare'][key]:12.2f}{results['widget'][key]:14.2f}{results['still'][key]:16.2f}")


if __name__ == "__main__":
    main()
