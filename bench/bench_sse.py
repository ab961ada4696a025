"""Benchmark: live progress under 1,000 concurrent SSE subscribers on one API process.

Run: ``.venv/bin/python -m bench.bench_sse [--subscribers 1000] [--generations 100] [--events 500]``.

Starts one API process (uvicorn, the embedded default: SQLite app DB, in-process fan-out) on a
private var dir, with Airflow's trigger endpoint played by ``tests/api/fake_airflow.py`` so that
``POST /api/generations`` measures the API, not Airflow. Then, in one run, prints side by side:
- ``POST /api/generations`` latency (p50, p99) with no subscriber (idle);
- the same while ``--subscribers`` SSE streams (spread over ``--generations`` generations, held
  by a separate client process, every one subscribed: its history read) receive ``--events`` events published through the internal
  endpoint at a steady rate; and the ratio loaded / idle (target p99 <= 2x);
- publish-to-receive latency over every delivery (p50, p99; target p99 <= 100 ms): the time from
  just before the publishing POST to the moment a subscriber parsed the event.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops.stack import Stack, StackConfig  # noqa: E402
from tests.api.fake_airflow import FakeAirflow  # noqa: E402
from tests.e2e.conftest import free_port  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def small_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def time_posts(api: str, key: str, photo: bytes, count: int) -> list[float]:
    durations = []
    with httpx.Client(base_url=api, timeout=30) as http:
        for _ in range(count):
            started = time.perf_counter()
            response = http.post(
                "/api/generations",
                headers={"Authorization": f"Bearer {key}"},
                files={"image": ("photo.jpg", photo, "image/jpeg")},
                data={"prompt": "wave"},
            )
            durations.append(time.perf_counter() - started)
            assert response.status_code == 202, response.text
    return durations


# --- the subscriber process ----------------------------------------------------------------


async def _subscribe(port: int, key: str, gid: str, ready: asyncio.Queue, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /api/generations/{gid}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    assert b" 200 " in status, status
    # Chunked transfer: every SSE event is one chunk, so its lines arrive whole.
    while line := await reader.readline():
        if line.startswith(b"retry: "):  # the stream's opening: history read, subscribed
            ready.put_nowait(1)
        elif line.startswith(b"data: "):
            received = time.time()
            payload = json.loads(line[6:])
            if "sent_at" in payload:
                latencies.append(received - payload["sent_at"])
        elif line.startswith(b"event: succeeded"):
            break
    writer.close()


async def _subscribers_main(port: int, key: str, gids: list[str], count: int, conn) -> None:
    ready: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    tasks = [asyncio.create_task(_subscribe(port, key, gids[i % len(gids)], ready, latencies)) for i in range(count)]
    for _ in range(count):
        await ready.get()
    conn.send("ready")
    await asyncio.gather(*tasks)
    conn.send(latencies)


def subscribers_process(port: int, key: str, gids: list[str], count: int, conn) -> None:
    asyncio.run(_subscribers_main(port, key, gids, count, conn))


# --- the run -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="events published per second")
    parser.add_argument("--posts", type=int, default=100, help="POST /api/generations timed per phase")
    args = parser.parse_args(argv)

    var_dir = Path(tempfile.mkdtemp(prefix="bitbuddies-bench-sse-"))
    fake_airflow = FakeAirflow().start()
    os.environ.update({"BITBUDDIES_VAR_DIR": str(var_dir)})
    os.environ.pop("BITBUDDIES_DATABASE_URL", None)
    from include.db import session_scope
    from include.migrations import migrate
    from include.models import Generation
    from include.settings import get_settings
    from tests.api.support import make_user

    migrate()
    user, key = make_user("bench@example.com", tokens=10_000)
    gids = []
    with session_scope() as session:
        for _ in range(args.generations):
            gen = Generation(user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg")
            session.add(gen)
            gids.append(gen.id)
    internal = {"Authorization": f"Bearer {get_settings().resolved_internal_token}"}

    port = free_port()
    cfg = StackConfig(
        var_dir=var_dir,
        api_port=port,
        extra_env={"BITBUDDIES_AIRFLOW_URL": fake_airflow.url, "BITBUDDIES_AIRFLOW_USERNAME": "admin", "BITBUDDIES_AIRFLOW_PASSWORD": "admin"},
    )
    stack = Stack(cfg)
    stack.start(["api"])
    try:
        stack.wait_ready(60)
        api = cfg.api_url
        photo = small_jpeg()
        time_posts(api, key, photo, 5)  # warm-up
        idle = time_posts(api, key, photo, args.posts)

        parent, child = multiprocessing.Pipe()
        subscribers = multiprocessing.Process(target=subscribers_process, args=(port, key, gids, args.subscribers, child))
        subscribers.start()
        assert parent.poll(120), "subscribers did not connect"
        assert parent.recv() == "ready"

        loaded: list[float] = []
        poster = threading.Thread(target=lambda: loaded.extend(time_posts(api, key, photo, args.posts)))
        poster.start()
        with httpx.Client(base_url=api, timeout=30, headers=internal) as http:
            interval = 1.0 / args.rate
            next_at = time.perf_counter()
            for n in range(args.events):
                gid = gids[n % len(gids)]
                body = {"type": "queue_position", "data": {"position": n, "sent_at": time.time()}, "key": f"bench:{n}"}
                assert http.post(f"/internal/generations/{gid}/events", json=body).status_code == 201
                next_at += interval
                time.sleep(max(0.0, next_at - time.perf_counter()))
            poster.join()
            for gid in gids:  # ends every stream
                http.post(f"/internal/generations/{gid}/events", json={"type": "succeeded", "data": {}})
        assert parent.poll(60), "subscribers did not finish"
        latencies = parent.recv()
        subscribers.join(10)
    finally:
        stack.stop()
        fake_airflow.stop()

    ms = [x * 1000 for x in latencies]
    expected = args.events * (args.subscribers // args.generations)
    print(f"SSE fan-out: {args.subscribers} subscribers on {args.generations} generations, one API process, "
          f"{args.events} events at {args.rate:.0f}/s, {len(ms)} deliveries (expected {expected})")
    print(f"  publish-to-receive latency  p50 {statistics.median(ms):7.1f} ms   p99 {percentile(ms, 99):7.1f} ms   (target p99 <= 100 ms)")
    i50, i99 = statistics.median(idle) * 1000, percentile(idle, 99) * 1000
    l50, l99 = statistics.median(loaded) * 1000, percentile(loaded, 99) * 1000
    print(f"  POST /api/generations idle  p50 {i50:7.1f} ms   p99 {i99:7.1f} ms   (p95 {percentile(idle, 95) * 1000:.1f}, "
          f"max {max(idle) * 1000:.1f} ms; {len(idle)} requests)")
    print(f"  POST /api/generations load  p50 {l50:7.1f} ms   p99 {l99:7.1f} ms   (p95 {percentile(loaded, 95) * 1000:.1f}, "
          f"max {max(loaded) * 1000:.1f} ms; {len(loaded)} requests)")
    print(f"  ratio loaded/idle           p50 {l50 / i50:7.2f} x    p99 {l99 / i99:7.2f} x    (target p99 <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
