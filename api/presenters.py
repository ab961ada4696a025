"""Turning stored rows into what the API returns: absolute asset and share URLs."""

from __future__ import annotations

from api.assets import asset_version
from include.generations import ASSET_FILES, pending_formats, ready_formats, share_url
from include.models import Generation, GenerationAssets, GenerationPublic


def asset_urls(generation: Generation) -> dict[str, str]:
    """Public download URL per asset kind; empty until the generation succeeded.

    Public (under the share page) rather than owner-only, so that ``<video>`` and ``<img>``
    tags, which cannot send an Authorization header, can play them. Each URL carries its
    version (``?v=``), which makes it cacheable for good (see :mod:`api.assets`).
    """
    if generation.status != "succeeded":
        return {}
    base = share_url(generation)
    return {
        kind: f"{base}/{ASSET_FILES[kind]}?v={asset_version(generation, kind)}"
        for kind in ASSET_FILES
        if generation.assets.get(kind)
    }


def generation_public(generation: Generation) -> GenerationPublic:
    return GenerationPublic(
        id=generation.id,
        prompt=generation.prompt,
        share_title=generation.share_title,
        status=generation.status,
        stage=generation.stage,
        error=generation.error,
        refund_state=generation.refund_state,
        created_at=generation.created_at,
        finished_at=generation.finished_at,
        assets=GenerationAssets(**asset_urls(generation)),
        formats_ready=ready_formats(generation),
        formats_pending=pending_formats(generation),
        share_url=share_url(generation),
    )
