"""include/stages.py: the one declaration of the pipeline's stages, and what reads it agrees.

The DAG side (task per model stage, its pool and waits) is checked in
tests/dags/test_dag_integrity.py; here the model server and the pools.
"""

from __future__ import annotations

import json
from pathlib import Path

from include.stages import MEDIA_POOL, MODEL_IDS, MODEL_STAGES, STAGE_NAMES, STAGES, model_pool
from model_server.model_stages import MODELS

ROOT = Path(__file__).resolve().parents[2]


def test_stage_names_are_unique_and_model_stages_have_waits():
    assert len(set(STAGE_NAMES)) == len(STAGES)
    assert all(stage.waits is not None for stage in MODEL_STAGES.values())
    assert all(stage.waits is None for stage in STAGES if stage.name not in MODEL_STAGES)


def test_the_model_server_offers_every_declared_model_and_nothing_else():
    assert set(MODELS) == set(MODEL_IDS.values())


def test_the_pools_the_stages_use_exist():
    pools = json.loads((ROOT / "config" / "pools.json").read_text())
    assert MEDIA_POOL in pools
    assert {model_pool("local"), model_pool("fal")} <= set(pools)
