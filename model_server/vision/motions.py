"""Motion clips as data: joint angles and body moves over the loop phase, always seamless.

A clip maps channels to curves of the phase ``t`` in [0, 1) of one beat. A curve is either a
sum of sines with whole numbers of cycles per beat (``Wave``) or keyframes with wrap-around
(``Keys``, eased between keys), so its value at t = 1 is its value at t = 0 and
a loop of whole beats never jumps. Each clip also says how many beats a second it plays.

Channels are anatomical, so one clip fits any character and either side of the body:
- ``lift`` (share of the character's height, up), ``shift`` (share of the height, to the image's
  right), ``tilt`` (degrees, the whole body about its feet, top to the right), ``squash``
  (> 0 wider and shorter, < 0 taller and thinner; volume kept);
- ``spine`` and ``neck`` (degrees, leaning to the image's right);
- ``left_shoulder`` / ``right_shoulder`` (arm raised outward from hanging, degrees) with
  ``..._swing`` (arm swung toward the walking direction, the image's right), ``left_elbow`` /
  ``right_elbow`` (bend, degrees);
- ``left_hip`` / ``right_hip`` (leg spread outward) with ``..._swing`` (leg swung forward),
  ``left_knee`` / ``right_knee`` (bend: the shin goes back).
``left``/``right`` are the character's own (mediapipe's) sides. The wave and dance clips are
written for the left arm; ``mirrored`` swaps the sides when the right arm is the free one.

Objects without a pose (a toy, a pet) move only the body channels: bounce, squash, sway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Wave:
    """offset + sum of amp * sin(2 pi (k t + phase)) over (k, amp, phase) terms; k whole."""

    offset: float = 0.0
    terms: tuple[tuple[int, float, float], ...] = ()

    def __call__(self, t: float) -> float:
        return self.offset + sum(a * math.sin(2 * math.pi * (k * t + p)) for k, a, p in self.terms)


@dataclass(frozen=True)
class Keys:
    """Keyframes (phase in [0, 1), value) with wrap-around, eased in and out between keys (a
    cosine blend: smooth, and never beyond the keys' values, so limits hold between them)."""

    points: tuple[tuple[float, float], ...]

    def __call__(self, t: float) -> float:
        t = t % 1.0
        pts = sorted(self.points)
        n = len(pts)
        i = max(j for j in range(n) if pts[j][0] <= t) if t >= pts[0][0] else n - 1
        t0, v0 = pts[i]
        t1, v1 = pts[(i + 1) % n]
        span = (t1 - t0) % 1.0 or 1.0
        u = ((t - t0) % 1.0) / span
        return v0 + (v1 - v0) * (1.0 - math.cos(math.pi * u)) / 2.0


@dataclass(frozen=True)
class Clip:
    name: str
    beats_per_second: float
    channels: Mapping[str, Wave | Keys]
    # Channels whose values are the joint's angle itself (retargeted: the photo's rest angle is
    # subtracted); the others are offsets from the photo's pose.
    absolute: frozenset[str] = frozenset()

    def beats(self, seconds: float) -> int:
        """Whole beats in a loop of ``seconds`` (at least one): the loop stays seamless."""
        return max(1, round(seconds * self.beats_per_second))

    def at(self, t: float) -> dict[str, float]:
        """Every channel's value at beat phase ``t``."""
        return {name: curve(t) for name, curve in self.channels.items()}


# Anatomical limits of the joint channels (degrees), checked by the tests on every clip.
LIMITS = {
    "spine": (-15, 15), "neck": (-25, 25),
    "left_shoulder": (-25, 175), "right_shoulder": (-25, 175),
    "left_shoulder_swing": (-60, 60), "right_shoulder_swing": (-60, 60),
    "left_elbow": (0, 150), "right_elbow": (0, 150),
    "left_hip": (-10, 45), "right_hip": (-10, 45),
    "left_hip_swing": (-40, 45), "right_hip_swing": (-40, 45),
    "left_knee": (0, 120), "right_knee": (0, 120),
    "tilt": (-12, 12), "squash": (-0.12, 0.12), "lift": (0.0, 0.3), "shift": (-0.1, 0.1),
}
BODY_CHANNELS = ("lift", "shift", "tilt", "squash")
ARMS = frozenset({"left_shoulder", "right_shoulder", "left_elbow", "right_elbow"})


def _w(offset: float = 0.0, *terms: tuple[int, float, float]) -> Wave:
    return Wave(offset, tuple(terms))


CLIPS: dict[str, Clip] = {
    # Breathing (three breaths a loop), a slow weight shift from foot to foot, a head that follows.
    "idle": Clip("idle", 0.2, {
        "squash": _w(0.0, (3, 0.012, 0.0)),
        "tilt": _w(0.0, (1, 1.8, 0.0)),
        "shift": _w(0.0, (1, 0.012, 0.0)),
        "spine": _w(0.0, (1, -2.5, 0.0), (3, 0.8, 0.25)),
        "neck": _w(0.0, (1, 5.0, 0.1), (2, 1.5, 0.0)),
        "left_shoulder": _w(6.0, (3, 2.5, 0.0)),
        "right_shoulder": _w(6.0, (3, 2.5, 0.0)),
        "left_elbow": _w(8.0, (3, 3.0, 0.1)),
        "right_elbow": _w(8.0, (3, 3.0, 0.1)),
        "left_hip": _w(2.0, (1, 1.5, 0.0)),
        "right_hip": _w(2.0, (1, -1.5, 0.0)),
    }),
    # A happy bounce: up and down with squash on landing, arms flapping, the head bobbing.
    "bounce": Clip("bounce", 1.0, {
        "lift": _w(0.02, (1, 0.02, 0.75)),
        "squash": _w(0.0, (1, 0.045, 0.25)),
        "tilt": Wave(0.0, ((1, 1.5, 0.0),)),
        "spine": _w(0.0, (1, 2.0, 0.0)),
        "neck": _w(0.0, (1, -4.0, 0.1)),
        "left_shoulder": _w(18.0, (1, 10.0, 0.75)),
        "right_shoulder": _w(18.0, (1, 10.0, 0.75)),
        "left_elbow": _w(15.0, (1, 8.0, 0.0)),
        "right_elbow": _w(15.0, (1, 8.0, 0.0)),
        "left_hip": _w(3.0, (1, 2.0, 0.75)),
        "right_hip": _w(3.0, (1, 2.0, 0.75)),
    }),
    # Rocking side to side from the feet, the spine and head leaning against it, arms lagging.
    "sway": Clip("sway", 0.5, {
        "tilt": _w(0.0, (1, 6.0, 0.0)),
        "lift": _w(0.0075, (2, 0.0075, 0.75)),
        "spine": _w(0.0, (1, -3.0, 0.05)),
        "neck": _w(0.0, (1, -6.0, 0.1)),
        "left_shoulder": _w(12.0, (1, -8.0, 0.1)),
        "right_shoulder": _w(12.0, (1, 8.0, 0.1)),
        "left_elbow": _w(10.0, (1, 5.0, 0.0)),
        "right_elbow": _w(10.0, (1, -5.0, 0.0)),
        "left_hip": _w(3.0, (1, 2.0, 0.0)),
        "right_hip": _w(3.0, (1, -2.0, 0.0)),
    }),
    # Arm up, forearm waggling twice a beat; the body leans away from the arm; the other arm rests.
    "wave": Clip("wave", 1.0, {
        "lift": _w(0.01, (1, 0.01, 0.75)),
        "squash": _w(0.0, (1, 0.015, 0.25)),
        "spine": _w(-3.0, (1, 1.5, 0.0)),
        "neck": _w(5.0, (1, 3.0, 0.1)),
        "left_shoulder": _w(135.0, (1, 6.0, 0.0)),
        "left_elbow": _w(45.0, (2, 28.0, 0.0)),
        "right_shoulder": _w(8.0, (1, 3.0, 0.0)),
        "right_elbow": _w(12.0, (1, 4.0, 0.0)),
        "left_hip": _w(3.0),
        "right_hip": _w(3.0),
    }, absolute=frozenset({"left_shoulder", "left_elbow"})),
    # Crouch, take off with arms thrown up, land with a squash; legs tuck in the air.
    "jump": Clip("jump", 0.8, {
        "lift": Keys(((0.0, 0.0), (0.18, 0.0), (0.45, 0.2), (0.72, 0.0), (0.86, 0.0))),
        "squash": Keys(((0.0, 0.0), (0.15, 0.08), (0.3, -0.07), (0.45, -0.02), (0.74, 0.07), (0.88, 0.0))),
        "neck": Keys(((0.0, 0.0), (0.15, 4.0), (0.45, -4.0), (0.74, 3.0))),
        "left_shoulder": Keys(((0.0, 15.0), (0.15, 5.0), (0.4, 150.0), (0.6, 120.0), (0.8, 30.0))),
        "right_shoulder": Keys(((0.0, 15.0), (0.15, 5.0), (0.4, 150.0), (0.6, 120.0), (0.8, 30.0))),
        "left_elbow": Keys(((0.0, 10.0), (0.15, 30.0), (0.4, 20.0), (0.8, 15.0))),
        "right_elbow": Keys(((0.0, 10.0), (0.15, 30.0), (0.4, 20.0), (0.8, 15.0))),
        "left_hip": Keys(((0.0, 2.0), (0.2, 2.0), (0.45, 18.0), (0.72, 4.0))),
        "right_hip": Keys(((0.0, 2.0), (0.2, 2.0), (0.45, 18.0), (0.72, 4.0))),
    }, absolute=ARMS),
    # Hips and shoulders swinging on the beat, arms up and alternating, knees pumping, a head bob.
    "dance": Clip("dance", 1.0, {
        "lift": _w(0.025, (2, 0.025, 0.75)),
        "shift": _w(0.0, (1, 0.04, 0.0)),
        "tilt": _w(0.0, (1, 5.0, 0.0)),
        "spine": _w(0.0, (1, -9.0, 0.0)),
        "neck": _w(0.0, (1, 10.0, 0.1), (2, 3.0, 0.0)),
        "squash": _w(0.0, (2, 0.03, 0.25)),
        "left_shoulder": _w(95.0, (1, 40.0, 0.0)),
        "right_shoulder": _w(95.0, (1, -40.0, 0.0)),
        "left_elbow": _w(70.0, (2, 25.0, 0.0)),
        "right_elbow": _w(70.0, (2, 25.0, 0.5)),
        "left_hip": _w(10.0, (1, 7.0, 0.0)),
        "right_hip": _w(10.0, (1, -7.0, 0.0)),
    }, absolute=ARMS),
    # A walk toward the image's right, one stride (two steps) a second: legs swing like
    # pendulums, the swinging knee bends, arms swing against the legs; the body dips and rises
    # with each step (the planted foot keeps it on the ground) and rocks a little.
    "walk": Clip("walk", 1.0, {
        "left_hip_swing": _w(0.0, (1, 24.0, 0.0)),
        "right_hip_swing": _w(0.0, (1, 24.0, 0.5)),
        # Bent most at mid-swing (clearing the ground), straight from heel strike through the
        # stance, bending again as the heel lifts behind.
        "left_knee": Keys(((0.0, 40.0), (0.14, 12.0), (0.22, 0.0), (0.55, 2.0), (0.7, 10.0), (0.85, 30.0))),
        "right_knee": Keys(((0.5, 40.0), (0.64, 12.0), (0.72, 0.0), (0.05, 2.0), (0.2, 10.0), (0.35, 30.0))),
        "left_shoulder": _w(6.0),
        "right_shoulder": _w(6.0),
        "left_shoulder_swing": _w(0.0, (1, 20.0, 0.5)),
        "right_shoulder_swing": _w(0.0, (1, 20.0, 0.0)),
        "left_elbow": _w(18.0, (1, 10.0, 0.0)),
        "right_elbow": _w(18.0, (1, 10.0, 0.5)),
        "spine": _w(2.0, (2, 1.0, 0.25)),
        "neck": _w(0.0, (2, 1.5, 0.0)),
        "tilt": _w(0.0, (1, 1.5, 0.25)),
    }),
}
# Objects: no limbs, so the body channels say everything (and a walk is a waddle).
OBJECT_CLIPS: dict[str, Clip] = {
    "idle": Clip("idle", 0.4, {"squash": _w(0.0, (1, 0.03, 0.0)), "tilt": _w(0.0, (1, 2.0, 0.25))}),
    "bounce": Clip("bounce", 1.0, {"lift": _w(0.02, (1, 0.02, 0.75)), "squash": _w(0.0, (1, 0.045, 0.25)),
                                   "tilt": _w(0.0, (1, 1.5, 0.0))}),
    "sway": Clip("sway", 0.5, {"tilt": _w(0.0, (1, 6.0, 0.0)), "lift": _w(0.0075, (2, 0.0075, 0.75))}),
    "wave": Clip("wave", 1.0, {"tilt": _w(0.0, (1, 8.0, 0.0)), "squash": _w(0.0, (2, 0.02, 0.25)),
                               "lift": _w(0.01, (1, 0.01, 0.75))}),
    "jump": Clip("jump", 0.8, {k: CLIPS["jump"].channels[k] for k in ("lift", "squash")}),
    "dance": Clip("dance", 1.0, {"tilt": _w(0.0, (1, 8.0, 0.0)), "shift": _w(0.0, (1, 0.05, 0.0)),
                                 "lift": _w(0.025, (2, 0.025, 0.75)), "squash": _w(0.0, (2, 0.04, 0.25))}),
    # A waddle: hop from one side to the other, two hops a second.
    "walk": Clip("walk", 1.0, {"tilt": _w(0.0, (1, 7.0, 0.0)), "lift": _w(0.03, (2, 0.03, 0.75)),
                               "squash": _w(0.0, (2, 0.03, 0.25))}),
}
MOTIONS = tuple(CLIPS)
# The prompt's older motion names.
ALIASES = {"breathe": "idle"}


def clip_for(motion: str, has_pose: bool) -> Clip:
    table = CLIPS if has_pose else OBJECT_CLIPS
    return table.get(ALIASES.get(motion, motion), table["idle"])


def mirrored(pose: dict[str, float]) -> dict[str, float]:
    """The same pose with the character's left and right swapped."""
    out = {}
    for name, value in pose.items():
        if name.startswith("left_"):
            out["right_" + name[5:]] = value
        elif name.startswith("right_"):
            out["left_" + name[6:]] = value
        else:
            out[name] = value
    return out


def sample(clip: Clip, seconds: float, frames: int) -> list[dict[str, float]]:
    """The clip's channels at each of ``frames`` frames of a ``seconds`` loop (whole beats)."""
    beats = clip.beats(seconds)
    return [clip.at((beats * i / frames) % 1.0) for i in range(frames)]


def as_array(poses: list[dict[str, float]], names: tuple[str, ...]) -> np.ndarray:
    return np.array([[p.get(n, 0.0) for n in names] for p in poses], np.float64)
