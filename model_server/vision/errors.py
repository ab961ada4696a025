"""Business errors of the computer-vision stages.

A :class:`VisionError` means the input can never succeed: retrying the stage is useless and
the message is shown to the user as is. Anything else raised by a stage is a technical
failure that may be retried.
"""

from __future__ import annotations

# The codes the stages raise; "nsfw" is decided by the caller from the moderation report.
INVALID_IMAGE = "invalid_image"
NO_USABLE_SUBJECT = "no_usable_subject"
SUBJECT_TOO_SMALL = "subject_too_small"
POOR_CUTOUT = "poor_cutout"  # the cut-out failed the quality checks (model_server/vision/quality.py)
NSFW = "nsfw"
ERROR_CODES = frozenset({INVALID_IMAGE, NO_USABLE_SUBJECT, SUBJECT_TOO_SMALL, POOR_CUTOUT, NSFW})


class VisionError(Exception):
    """A business error: the input can never succeed (retrying is useless). User-facing message."""

    def __init__(self, code: str, message: str):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown vision error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
