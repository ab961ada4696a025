"""The generation pipeline's stages, declared once: name, model id, pool and how each job is waited for.

Read by the generation DAG (task ids, pools, waits), the model provider hook (default model ids,
``plugins/bitbuddies_airflow/hooks.py``), the model server (the models it offers,
``model_server/model_stages.py``), progress events and the CLI (stage order). A stage's name is
its task id in the DAG and the ``stage`` users see in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

# The pool of the model provider in use caps its jobs in flight (config/pools.json: model_local,
# model_fal); deferred waits count against it.
MODEL_POOL_PREFIX = "model_"
# Caps concurrent ffmpeg encodes (and sticker sheet renders) across all workers.
MEDIA_POOL = "media_cpu"


@dataclass(frozen=True)
class Waits:
    """How a model job is waited for: the poll interval, how long the job may take, and how long
    the worker watches a fresh job before deferring (jobs that finish within it skip the
    defer/resume round trip)."""

    poll_interval: float
    job_timeout: timedelta
    grace: float = 3.0

    def operator_kwargs(self) -> dict[str, Any]:
        return {"poll_interval": self.poll_interval, "job_timeout": self.job_timeout, "grace": self.grace}


@dataclass(frozen=True)
class Stage:
    name: str
    model_id: str | None = None  # the local model server's model (None: not a model stage)
    waits: Waits | None = None  # model stages only
    pool: str | None = None  # a fixed pool; model stages use the provider's (model_pool)


# Quick checks poll often; the long renders poll less and get more time. The grace covers what a
# stage's job takes on the local models (2 cores, under load: renders 1-4 s, the video stages 4-10 s),
# so a generation's jobs are fetched by the task that submitted them instead of a second task
# process after a trip through the triggerer; a job queued behind others is deferred at once.
_QUICK = Waits(poll_interval=0.5, job_timeout=timedelta(minutes=5))
_RENDER = Waits(poll_interval=0.5, job_timeout=timedelta(minutes=10), grace=6.0)
_VIDEO = Waits(poll_interval=1.0, job_timeout=timedelta(minutes=30), grace=12.0)

# In pipeline order. review runs only for a borderline photo, expand_full_body only when the
# subject is cut off.
STAGES: tuple[Stage, ...] = (
    Stage("charge"),
    Stage("moderate", "bitbuddies/moderate", _QUICK),
    # A borderline photo waits here for an operator's approval (include/review.py); others skip it.
    Stage("review"),
    Stage("analyze", "bitbuddies/analyze", _QUICK),
    Stage("cartoonize", "bitbuddies/cartoonize", _RENDER),
    Stage("expand_full_body", "bitbuddies/expand-full-body", _RENDER),
    Stage("segment_image", "bitbuddies/segment-image", _RENDER),
    Stage("animate", "bitbuddies/animate", _VIDEO),
    Stage("segment_video", "bitbuddies/segment-video", _VIDEO),
    Stage("transcode", pool=MEDIA_POOL),
    Stage("publish"),
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
MODEL_STAGES: dict[str, Stage] = {stage.name: stage for stage in STAGES if stage.model_id}
# A model that sleeps or fails on request, for tests and benchmarks of the waiting machinery.
SELFTEST = Stage("selftest", "bitbuddies/selftest", _QUICK)
# Stage name -> model id at the local model server (a provider connection may override them).
MODEL_IDS: dict[str, str] = {stage.name: stage.model_id for stage in (*MODEL_STAGES.values(), SELFTEST) if stage.model_id}


def model_pool(provider: str) -> str:
    """The pool of the model provider ``provider`` (setting ``model_provider``)."""
    return f"{MODEL_POOL_PREFIX}{provider}"


# The motions the animate stage knows (model_server/vision/motions.py has their clips): a person
# may choose one (web app, API ``motion``), else the prompt's words pick it (vision/prompt.py).
# Stages most generations never run: progress shows (and estimates) them only once they start.
OPTIONAL_STAGES = frozenset({"review", "expand_full_body"})

MOTIONS = ("idle", "bounce", "wave", "jump", "dance", "sway", "walk")
DEFAULT_MOTION = "bounce"
