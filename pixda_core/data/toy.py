"""The embedded toy benchmark: procedural street scenes written in the three real layouts.

This is a synthetic stand-in for trying the kit on a laptop, not a claim about real data. It
writes ``<out>/gta5``, ``<out>/synthia`` and ``<out>/cityscapes`` exactly as the real datasets
ship (GTA5 palettised label PNGs, SYNTHIA 16-bit three-channel label PNGs, Cityscapes
``gtFine_labelIds`` for the 18 train and 3 val cities), so every test and the demo go through
the real loaders.

Each scene is drawn as a map of classes (sky, buildings, road with sidewalks and lane marks,
vegetation, terrain, poles with signs and lights, cars, persons, riders on bicycles or
motorcycles, occasional trucks, buses and trains, walls and fences), with the pixel imbalance of
street scenes: road, building, vegetation and sky dominate; poles, lights, signs and riders are
rare. Each domain then renders it with its own look (palette, saturation, contrast, texture,
blur, sensor noise, lighting) and its own layout statistics (camera height, traffic, people,
an ego-vehicle hood in Cityscapes). ``gap`` scales every domain's departure from a shared
neutral look: 0 gives identical appearance (only layout differs), 1 the default shift.

Everything is deterministic per ``seed``: image ``i`` of a domain depends only on
(seed, domain, i, size, gap).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from .. import labels as L
from ..errors import DataError, PixdaError, run_cli
from .splits import TRAIN_CITIES, VAL_CITIES

# --- the classes a scene is drawn with: the 19 trainIds, then three that only some encodings
# distinguish (lane marks are "road" except in SYNTHIA; ego vehicle and void are ignored).
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON,
 RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)  # fmt: skip
LANE, EGO, VOID = 19, 20, 21
NUM_DRAW_CLASSES = 22

#: drawn class -> trainId (what a loader must decode).
DRAW_TO_TRAINID = np.array(list(range(19)) + [ROAD, L.IGNORE_INDEX, L.IGNORE_INDEX], np.uint8)
#: drawn class -> Cityscapes/GTA5 label id (lane -> road 7, ego vehicle 1, void -> static 4).
DRAW_TO_CITYSCAPES_ID = np.array(list(L.TRAINID_TO_CITYSCAPES_ID[:19]) + [7, 1, 4], dtype=np.uint8)
_SYN_INV = {t: s for s, t in sorted(L.SYNTHIA_ID_TO_TRAINID.items(), reverse=True)}
#: drawn class -> SYNTHIA class id (lane marking 22, ego and void 0).
DRAW_TO_SYNTHIA_ID = np.array([_SYN_INV[t] for t in range(19)] + [22, 0, 0], dtype=np.uint16)

#: The real datasets' image sizes; toy sources keep their size relative to Cityscapes.
REAL_SIZES = {"cityscapes": (2048, 1024), "gta5": (1914, 1052), "synthia": (1280, 760)}
DOMAIN_CODES = {"gta5": 0, "synthia": 1, "cityscapes/train": 2, "cityscapes/val": 3}
#: 1: the first generator; 2: looks that keep the objects' colours, cities that differ in look
#: and layout, 24 train images per city, source images part-way to the target look
FORMAT_VERSION = 2


def domain_size(domain: str, size: tuple[int, int]) -> tuple[int, int]:
    """Image size of ``domain`` when the toy Cityscapes is ``size`` = (W, H)."""
    cw, ch = REAL_SIZES["cityscapes"]
    rw, rh = REAL_SIZES[domain.split("/")[0]]
    return max(8, round(size[0] * rw / cw)), max(8, round(size[1] * rh / ch))


# ------------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class Layout:
    """Layout statistics of one domain (fractions of the image, expected object counts)."""

    horizon: tuple[float, float]
    road_half_width: tuple[float, float]
    sidewalk_width: tuple[float, float]
    building_share: float
    terrain_prob: float
    cars: float
    persons: float
    riders: float
    poles: float
    trucks: float
    buses: float
    trains: float
    fences: float
    walls: float
    voids: float
    ego: bool


LAYOUTS = {
    "gta5": Layout((0.40, 0.50), (0.45, 0.65), (0.08, 0.2), 0.65, 0.5, 4.0, 1.5, 0.4, 3.0,
                   0.5, 0.25, 0.08, 0.6, 0.4, 0.5, False),
    "synthia": Layout((0.22, 0.60), (0.35, 0.60), (0.10, 0.3), 0.70, 0.3, 3.0, 4.0, 1.2, 3.5,
                      0.3, 0.3, 0.05, 0.4, 0.6, 1.0, False),
    "cityscapes": Layout((0.36, 0.46), (0.35, 0.55), (0.10, 0.25), 0.55, 0.6, 5.0, 3.0, 0.7,
                         4.5, 0.3, 0.15, 0.06, 0.8, 0.5, 1.5, True),
}  # fmt: skip


class _Canvas:
    """Draws the same shape into the class map and the instance map."""

    def __init__(self, w: int, h: int):
        self.cls = Image.new("L", (w, h), SKY)
        self.ins = Image.new("I", (w, h), 0)
        self._dc, self._di = ImageDraw.Draw(self.cls), ImageDraw.Draw(self.ins)
        self.next_instance = 1

    def new_instance(self) -> int:
        self.next_instance += 1
        return self.next_instance - 1

    def shape(self, kind: str, xy, cls: int, inst: int = 0) -> None:
        getattr(self._dc, kind)(xy, fill=cls)
        getattr(self._di, kind)(xy, fill=inst)


def draw_scene(rng: np.random.Generator, w: int, h: int, lay: Layout):
    """Draw one street scene. Returns (classes (H, W) uint8, instances (H, W) int32)."""
    cv = _Canvas(w, h)
    y0 = h * rng.uniform(*lay.horizon)
    vx = w * rng.uniform(0.4, 0.6)
    ground = h - y0

    # skyline: buildings, tree lines and gaps of sky standing on the horizon
    x = -rng.uniform(0, 0.1) * w
    while x < w:
        bw = w * rng.uniform(0.05, 0.22)
        r = rng.random()
        if r < lay.building_share:
            top = y0 - h * rng.uniform(0.08, 0.45)
            cv.shape("rectangle", (x, top, x + bw, y0 + 1), BUILDING)
        elif r < lay.building_share + (1 - lay.building_share) * 0.8:
            for _ in range(rng.integers(1, 4)):
                cx, rad = x + bw * rng.uniform(0.2, 0.8), h * rng.uniform(0.05, 0.16)
                cy = y0 - rad * rng.uniform(0.3, 1.2)
                cv.shape("ellipse", (cx - rad, cy - rad, cx + rad, cy + rad), VEGETATION)
            cv.shape("rectangle", (x, y0 - h * 0.04, x + bw, y0 + 1), VEGETATION)
        x += bw

    # ground: terrain or vegetation verges, sidewalks, road, lane marks
    verge = TERRAIN if rng.random() < lay.terrain_prob else VEGETATION
    cv.shape("rectangle", (0, y0, w, h), verge)
    rw = w * rng.uniform(*lay.road_half_width)
    sw = w * rng.uniform(*lay.sidewalk_width)
    apex = 0.015 * w

    def edge(t, half):  # x offset from vx of a line that widens from apex to `half` at the bottom
        return apex + (half - apex) * t

    def ypos(t):
        return y0 + ground * t

    cv.shape(
        "polygon",
        [(vx - apex * 1.5, y0), (vx + apex * 1.5, y0), (vx + rw + sw, h), (vx - rw - sw, h)],
        SIDEWALK,
    )
    cv.shape("polygon", [(vx - apex, y0), (vx + apex, y0), (vx + rw, h), (vx - rw, h)], ROAD)
    t = 0.05
    while t < 1.0:
        t2 = min(1.0, t * 1.35 + 0.02)
        a, b = 0.004 * w * t, 0.004 * w * t2
        cv.shape(
            "polygon",
            [(vx - a, ypos(t)), (vx + a, ypos(t)), (vx + b, ypos(t2)), (vx - b, ypos(t2))],
            LANE,
        )
        t = t2 + (t2 - t) * 0.8

    # walls and fences along the outer edge of a sidewalk
    for cls, rate, tall in ((FENCE, lay.fences, 0.22), (WALL, lay.walls, 0.3)):
        for _ in range(rng.poisson(rate)):
            side = rng.choice((-1, 1))
            t1 = rng.uniform(0.05, 0.6)
            t2 = min(1.0, t1 + rng.uniform(0.1, 0.4))
            e1, e2 = vx + side * edge(t1, rw + sw), vx + side * edge(t2, rw + sw)
            h1, h2 = tall * ground * t1, tall * ground * t2
            cv.shape(
                "polygon",
                [(e1, ypos(t1)), (e2, ypos(t2)), (e2, ypos(t2) - h2), (e1, ypos(t1) - h1)],
                cls,
            )

    # things, drawn far to near
    objects = []
    for kind, rate in (
        ("pole", lay.poles),
        ("person", lay.persons),
        ("rider", lay.riders),
        ("car", lay.cars),
        ("truck", lay.trucks),
        ("bus", lay.buses),
        ("train", lay.trains),
        ("void", lay.voids),
    ):
        objects += [(rng.uniform(0.08, 1.0), kind) for _ in range(rng.poisson(rate))]
    objects.sort()
    for t, kind in objects:
        y, u, side = ypos(t), 0.55 * ground * t, rng.choice((-1, 1))
        on_sidewalk = vx + side * (edge(t, rw) + edge(t, sw) * rng.uniform(0.1, 0.9))
        on_road = vx + side * edge(t, rw) * rng.uniform(0.15, 0.85)
        if kind == "pole":
            x, pw = on_sidewalk, max(1.0, 0.035 * u)
            top = y - 1.4 * u
            cv.shape("rectangle", (x - pw / 2, top, x + pw / 2, y), POLE)
            r = rng.random()
            if r < 0.5:
                s = 0.12 * u
                cv.shape("rectangle", (x - s, top, x + s, top + 1.5 * s), SIGN)
            elif r < 0.85:
                cv.shape("rectangle", (x - 0.06 * u, top, x + 0.06 * u, top + 0.28 * u), LIGHT)
        elif kind == "person":
            x = on_sidewalk if rng.random() < 0.8 else on_road
            inst, bw = cv.new_instance(), 0.11 * u
            cv.shape("ellipse", (x - bw, y - 0.62 * u, x + bw, y), PERSON, inst)
            cv.shape(
                "ellipse", (x - 0.6 * bw, y - 0.78 * u, x + 0.6 * bw, y - 0.6 * u), PERSON, inst
            )
        elif kind == "rider":
            x, cycle = on_road, BICYCLE if rng.random() < 0.6 else MOTORCYCLE
            inst, r = cv.new_instance(), (0.12 if cycle == BICYCLE else 0.15) * u
            for wx in (x - 0.32 * u, x + 0.32 * u):
                cv.shape("ellipse", (wx - r, y - 2 * r, wx + r, y), cycle, inst)
            body = 0.05 if cycle == BICYCLE else 0.12
            cv.shape(
                "rectangle",
                (x - 0.32 * u, y - r - body * u - 0.02 * u, x + 0.32 * u, y - r + 0.02 * u),
                cycle,
                inst,
            )
            inst = cv.new_instance()
            cv.shape("ellipse", (x - 0.1 * u, y - r - 0.55 * u, x + 0.1 * u, y - r), RIDER, inst)
            cv.shape(
                "ellipse",
                (x - 0.06 * u, y - r - 0.7 * u, x + 0.06 * u, y - r - 0.53 * u),
                RIDER,
                inst,
            )
        elif kind in ("car", "truck", "bus", "train"):
            cls, bw, bh = {
                "car": (CAR, 0.45, 0.55),
                "truck": (TRUCK, 0.6, 1.05),
                "bus": (BUS, 0.65, 1.2),
                "train": (TRAIN, 0.7, 1.3),
            }[kind]
            x = on_road if kind != "train" else vx + rng.uniform(-0.3, 0.3) * edge(t, rw)
            bw *= u * rng.uniform(0.85, 1.15)
            inst = cv.new_instance()
            cv.shape("rectangle", (x - bw, y - 0.6 * bh * u, x + bw, y), cls, inst)
            cab = 0.8 if kind == "car" else 1.0
            cv.shape(
                "polygon",
                [
                    (x - bw * cab, y - 0.6 * bh * u),
                    (x + bw * cab, y - 0.6 * bh * u),
                    (x + bw * 0.75 * cab, y - bh * u),
                    (x - bw * 0.75 * cab, y - bh * u),
                ],
                cls,
                inst,
            )
        else:  # void: an unlabelled object (bin, box, bollard)
            x, s = on_sidewalk, 0.15 * u * rng.uniform(0.5, 1.5)
            cv.shape("rectangle", (x - s, y - 1.5 * s, x + s, y), VOID)

    if lay.ego:  # the camera car's hood, as at the bottom of Cityscapes frames
        hood = h * rng.uniform(0.06, 0.1)
        cv.shape("ellipse", (-0.2 * w, h - hood, 1.2 * w, h + hood * 3), EGO)
    return np.asarray(cv.cls, dtype=np.uint8), np.asarray(cv.ins, dtype=np.int32)


# -------------------------------------------------------------------------------- appearance

#: The shared neutral look, one RGB colour per drawn class.
NEUTRAL_PALETTE = np.array([
    (88, 86, 92), (152, 140, 136), (122, 106, 96), (160, 150, 128), (140, 128, 106),
    (92, 92, 98), (64, 62, 44), (205, 190, 50), (72, 122, 52), (132, 150, 82), (150, 185, 228),
    (112, 72, 82), (150, 60, 62), (92, 92, 140), (130, 120, 112), (185, 150, 62),
    (118, 140, 152), (72, 60, 82), (62, 92, 112), (225, 225, 215), (42, 42, 46), (122, 110, 120),
], dtype=np.float32)  # fmt: skip
#: How strongly each drawn class is textured, and how much its instances vary in colour.
TEXTURE = np.array([0.6, 0.5, 0.7, 0.5, 0.9, 0.2, 0.2, 0.1, 1.6, 1.1, 0.12, 0.5, 0.5, 0.3,
                    0.4, 0.3, 0.3, 0.4, 0.4, 0.2, 0.2, 0.6], dtype=np.float32)  # fmt: skip
INSTANCE_JITTER = np.zeros(NUM_DRAW_CLASSES, np.float32)
INSTANCE_JITTER[[PERSON, RIDER]] = 30
INSTANCE_JITTER[[CAR, TRUCK, BUS, MOTORCYCLE, BICYCLE]] = 55
#: the colour of haze (fog, dust, low sun)
HAZE_COLOUR = np.array((178, 184, 190), np.float32)


@dataclass(frozen=True)
class Look:
    """A rendering look: a departure from the neutral look (``NEUTRAL_LOOK``)."""

    palette_shift: float  # amplitude of a fixed per-class colour offset
    saturation: float
    contrast: float
    brightness: float
    tint: tuple[float, float, float]
    texture: float
    blur: float  # Gaussian sigma in pixels at 256 px width
    noise: float  # sensor noise sigma, 0-255 scale
    vignette: float
    lighting: float  # amplitude of a random left-right lighting gradient
    haze: float  # share of a veil of HAZE_COLOUR, strongest at the top of the image


NEUTRAL_LOOK = Look(0.0, 1.0, 1.0, 0.0, (1.0, 1.0, 1.0), 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
#: Each domain's look (at gap 1). The per-class colour offsets are small: what separates the
#: domains is the camera and the renderer (colour response, texture, blur, noise, haze), as
#: between a game and a car's camera, while the objects keep roughly their colours.
LOOKS = {
    "gta5": Look(18.0, 1.4, 1.15, 6.0, (1.08, 1.0, 0.88), 0.6, 0.0, 1.0, 0.0, 0.15, 0.0),
    "synthia": Look(20.0, 0.95, 1.05, 10.0, (0.94, 1.0, 1.1), 0.2, 0.0, 0.0, 0.0, 0.05, 0.0),
    "cityscapes": Look(20.0, 0.55, 0.7, -18.0, (0.9, 1.04, 1.0), 1.6, 0.9, 7.0, 0.6, 0.35, 0.12),
}


@dataclass(frozen=True)
class Variation:
    """How much a look varies around its base: standard deviations of additive (brightness)
    and log-multiplicative (contrast, saturation, tint) changes; haze and lighting gain up to
    their value."""

    brightness: float
    contrast: float
    saturation: float
    tint: float
    haze: float
    lighting: float


#: every image of every domain: weather and time of day, the same spread in each domain
IMAGE_VARIATION = Variation(8.0, 0.08, 0.10, 0.03, 0.12, 0.15)
#: each Cityscapes city around the Cityscapes look (scaled by the gap, like the look)
CITY_VARIATION = Variation(20.0, 0.20, 0.25, 0.08, 0.25, 0.15)
#: each Cityscapes image around its city's look (scaled by the gap): the real camera's days
TARGET_IMAGE_VARIATION = Variation(20.0, 0.20, 0.25, 0.06, 0.30, 0.25)
#: how much each Cityscapes image's layout statistics vary around its city's (0: not at all)
IMAGE_LAYOUT_JITTER = 1.6
#: the share of source images rendered with a look between the source's and the target's
MIXED_SHARE = 1 / 3


def _lerp(a: Look, b: Look, t: float) -> Look:
    """The look ``t`` of the way from ``a`` to ``b`` (field by field)."""
    mixed = {}
    for (k, u), v in zip(asdict(a).items(), asdict(b).values(), strict=True):
        if isinstance(u, tuple):
            mixed[k] = tuple(x + t * (y - x) for x, y in zip(u, v, strict=True))
        else:
            mixed[k] = u + t * (v - u)
    return Look(**mixed)


def scaled_look(domain: str, gap: float) -> Look:
    """The domain's look with every departure from neutral scaled by ``gap``."""
    return _lerp(NEUTRAL_LOOK, LOOKS[domain], gap)


def vary(look: Look, var: Variation, rng: np.random.Generator, scale: float = 1.0) -> Look:
    """``look`` changed by one draw of ``var`` (times ``scale``)."""
    return replace(
        look,
        brightness=look.brightness + scale * var.brightness * rng.normal(),
        contrast=look.contrast * float(np.exp(scale * var.contrast * rng.normal())),
        saturation=look.saturation * float(np.exp(scale * var.saturation * rng.normal())),
        tint=tuple(float(c * np.exp(scale * var.tint * rng.normal())) for c in look.tint),
        haze=look.haze + scale * var.haze * rng.random(),
        lighting=look.lighting + scale * var.lighting * rng.random(),
    )


def domain_palette(domain: str, gap: float) -> np.ndarray:
    """The neutral palette plus the domain's fixed per-class offset (not seed dependent)."""
    shift = np.random.default_rng(1000 + list(LOOKS).index(domain)).uniform(
        -1, 1, size=NEUTRAL_PALETTE.shape
    )
    return NEUTRAL_PALETTE + gap * LOOKS[domain].palette_shift * shift.astype(np.float32)


def _city(domain: str, index: int) -> int:
    """A Cityscapes scene's city: 0-17 train, 100-102 val (scene index = city * 10000 + j)."""
    return index // 10000 + (100 if domain == "cityscapes/val" else 0)


def city_look(city: int, seed: int, gap: float) -> Look:
    """The look of one Cityscapes city: the Cityscapes look varied by ``CITY_VARIATION``."""
    rng = np.random.default_rng([seed, 7, city])
    return vary(scaled_look("cityscapes", gap), CITY_VARIATION, rng, scale=gap)


def jittered_layout(base: Layout, rng: np.random.Generator, scale: float = 1.0) -> Layout:
    """``base`` with its camera height, how built up and how busy drawn around its values
    (``scale`` times the usual spread)."""
    busy = lambda rate, sd: float(rate * np.exp(scale * sd * rng.normal()))  # noqa: E731
    dy = scale * rng.uniform(-0.04, 0.04)
    built = np.clip(base.building_share + scale * rng.uniform(-0.2, 0.2), 0.2, 0.9)
    terrain = base.terrain_prob + scale * (rng.uniform(0.1, 0.6) - base.terrain_prob)
    return replace(
        base,
        horizon=(base.horizon[0] + dy, base.horizon[1] + dy),
        building_share=float(built),
        terrain_prob=float(np.clip(terrain, 0.0, 1.0)),
        cars=busy(base.cars, 0.4),
        persons=busy(base.persons, 0.5),
        riders=busy(base.riders, 0.5),
        poles=busy(base.poles, 0.3),
        trucks=busy(base.trucks, 0.5),
        buses=busy(base.buses, 0.5),
        trains=busy(base.trains, 0.5),
    )


def city_layout(city: int, seed: int) -> Layout:
    """The layout statistics of one Cityscapes city (:func:`jittered_layout`)."""
    return jittered_layout(LAYOUTS["cityscapes"], np.random.default_rng([seed, 8, city]))


def scene_look(
    domain: str, index: int, seed: int = 0, gap: float = 1.0, mixed_share: float = MIXED_SHARE
) -> tuple[Look, np.ndarray, float]:
    """(look, palette, distance) of one scene. ``distance`` is how far its look lies from the
    target's, in units of the source-target gap: 0 for Cityscapes, 1 for a source image with
    its domain's look, 1 - t for the ``mixed_share`` of source images drawn ``t`` of the way
    (uniform in 0..1) towards the Cityscapes look. The draws come from their own stream, so a
    scene's content does not depend on its look."""
    kind = domain.split("/")[0]
    rng = np.random.default_rng([seed, DOMAIN_CODES[domain], index, 1])
    if kind == "cityscapes":
        look = city_look(_city(domain, index), seed, gap)
        look = vary(look, TARGET_IMAGE_VARIATION, rng, scale=gap)
        palette, distance = domain_palette(kind, gap), 0.0
    else:
        look, palette, distance = scaled_look(kind, gap), domain_palette(kind, gap), 1.0
        if rng.random() < mixed_share:
            t = float(rng.random())
            look = _lerp(look, scaled_look("cityscapes", gap), t)
            palette = palette + t * (domain_palette("cityscapes", gap) - palette)
            distance = 1.0 - t
    return vary(look, IMAGE_VARIATION, rng), palette, distance


def render(rng, classes: np.ndarray, instances: np.ndarray, palette: np.ndarray, look: Look):
    """Render a class map as an RGB image (H, W, 3) uint8, all vectorised."""
    h, w = classes.shape
    img = palette[classes].copy()
    jitter = rng.normal(0, 1, size=(int(instances.max()) + 1, 3)).astype(np.float32)
    jitter[0] = 0
    img += jitter[instances] * INSTANCE_JITTER[classes][..., None]

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # building windows: a per-image grid, darker
    pw, ph = rng.uniform(0.015, 0.04) * w, rng.uniform(0.03, 0.07) * h
    windows = (classes == BUILDING) & ((xx % pw) < 0.5 * pw) & ((yy % ph) < 0.5 * ph)
    img[windows] *= 0.62
    # sky: brighter towards the horizon
    sky = classes == SKY
    img[sky] += (yy[sky] / h * 60)[:, None]

    low = cv2.resize(rng.normal(0, 1, (h // 8 + 2, w // 8 + 2)).astype(np.float32), (w, h))
    high = rng.normal(0, 1, (h, w)).astype(np.float32)
    tex = (0.7 * low + 0.5 * high) * TEXTURE[classes] * look.texture
    img += 14.0 * tex[..., None]

    img *= (1 + look.lighting * rng.uniform(-1, 1) * (xx / w - 0.5))[..., None]
    gray = img.mean(axis=2, keepdims=True)
    img = gray + look.saturation * (img - gray)
    img = (img - 128.0) * look.contrast + 128.0 + look.brightness
    img *= np.asarray(look.tint, np.float32)
    if look.haze > 0:  # thicker towards the top of the frame (farther away)
        veil = (min(look.haze, 1.0) * (1 - yy / h))[..., None]
        img = img * (1 - veil) + veil * HAZE_COLOUR
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img *= (1 - 0.25 * look.vignette * r2)[..., None]
    if look.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=look.blur * w / 256)
    if look.noise > 0:
        img += rng.normal(0, look.noise, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def make_scene(
    domain: str,
    index: int,
    seed: int = 0,
    size=(256, 128),
    gap: float = 1.0,
    mixed_share: float = MIXED_SHARE,
):
    """One scene of ``domain`` ("gta5", "synthia", "cityscapes/train", "cityscapes/val").

    Returns (image (H, W, 3) uint8 RGB, drawn classes (H, W) uint8, instances (H, W) int32).
    Map the classes with ``DRAW_TO_TRAINID`` to get what a loader must decode.
    """
    kind = domain.split("/")[0]
    w, h = domain_size(kind, size)
    rng = np.random.default_rng([seed, DOMAIN_CODES[domain], index])
    if kind == "cityscapes":
        layout = city_layout(_city(domain, index), seed)
        if IMAGE_LAYOUT_JITTER:
            own = np.random.default_rng([seed, DOMAIN_CODES[domain], index, 2])
            layout = jittered_layout(layout, own, IMAGE_LAYOUT_JITTER)
    else:
        layout = LAYOUTS[kind]
    classes, instances = draw_scene(rng, w, h, layout)
    look, palette, _ = scene_look(domain, index, seed, gap, mixed_share)
    image = render(rng, classes, instances, palette, look)
    return image, classes, instances


# ----------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class ToySpec:
    """What a toy benchmark folder holds; saved as ``toy.json`` beside the three datasets."""

    seed: int = 0
    size: tuple[int, int] = (256, 128)
    gap: float = 1.0
    num_gta5: int = 300
    num_synthia: int = 300
    train_per_city: int = 24
    val_per_city: int = 20
    #: the share of source images rendered part-way to the target look (``scene_look``)
    mixed_share: float = MIXED_SHARE
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        return d


def _png(path: Path, img: Image.Image) -> None:
    img.save(path, compress_level=1)


def _cityscapes_name(city: str, j: int) -> str:
    return f"{city}/{city}_{j:06d}_000019_leftImg8bit.png"


def iter_scenes(spec: ToySpec):
    """(domain, index, name) for every scene the spec describes, in writing order."""
    for i in range(spec.num_gta5):
        yield "gta5", i, f"{i + 1:05d}.png"
    for i in range(spec.num_synthia):
        yield "synthia", i, f"{i:07d}.png"
    for split, cities, n in (
        ("train", TRAIN_CITIES, spec.train_per_city),
        ("val", VAL_CITIES, spec.val_per_city),
    ):
        for c, city in enumerate(cities):
            for j in range(n):
                yield f"cityscapes/{split}", c * 10000 + j, _cityscapes_name(city, j)


def scene_paths(out: Path, domain: str, name: str) -> tuple[Path, Path]:
    """(image, label) paths of one scene under ``out``, in its dataset's real layout."""
    if domain == "gta5":
        return out / "gta5" / "images" / name, out / "gta5" / "labels" / name
    if domain == "synthia":
        return out / "synthia" / "RGB" / name, out / "synthia" / "GT" / "LABELS" / name
    split = domain.split("/")[1]
    label = name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    return (
        out / "cityscapes" / "leftImg8bit" / split / name,
        out / "cityscapes" / "gtFine" / split / label,
    )


def write_scene(out: Path, domain: str, name: str, image, classes, instances) -> None:
    """Write one scene in its dataset's real layout and label encoding."""
    img_path, lab_path = scene_paths(out, domain, name)
    if domain == "gta5":
        _png(img_path, Image.fromarray(image))
        lab = Image.fromarray(DRAW_TO_CITYSCAPES_ID[classes], mode="L")
        lab.putpalette(_cityscapes_id_palette())  # GTA5 labels ship palettised
        _png(lab_path, lab)
    elif domain == "synthia":
        _png(img_path, Image.fromarray(image))
        bgr = np.zeros(classes.shape + (3,), np.uint16)  # OpenCV order: B, G = instance, R = class
        bgr[..., 1] = instances.astype(np.uint16)
        bgr[..., 2] = DRAW_TO_SYNTHIA_ID[classes]
        if not cv2.imwrite(str(lab_path), bgr):
            raise DataError(f"could not write {lab_path}")
    else:
        img_path.parent.mkdir(parents=True, exist_ok=True)
        lab_path.parent.mkdir(parents=True, exist_ok=True)
        _png(img_path, Image.fromarray(image))
        _png(lab_path, Image.fromarray(DRAW_TO_CITYSCAPES_ID[classes], mode="L"))


@functools.cache
def _cityscapes_id_palette() -> list[int]:
    from cityscapesscripts.helpers.labels import labels

    pal = np.zeros((256, 3), np.uint8)
    for lab in labels:
        if lab.id >= 0:
            pal[lab.id] = lab.color
    return pal.flatten().tolist()


#: per source image, how far its look lies from the target's (``scene_look``): the truth that
#: PixDA's selection can be checked against
LOOKS_FILE = "toy_looks.csv"


def write_look_distances(out: Path, spec: ToySpec) -> Path:
    """``<out>/toy_looks.csv``: ``dataset, name, distance`` for every source image."""
    import pandas as pd

    rows = [
        (domain, name, scene_look(domain, index, spec.seed, spec.gap, spec.mixed_share)[2])
        for domain, index, name in iter_scenes(spec)
        if domain in ("gta5", "synthia")
    ]
    path = out / LOOKS_FILE
    pd.DataFrame(rows, columns=["dataset", "name", "distance"]).to_csv(path, index=False)
    return path


def look_distances(source_root: str | os.PathLike) -> dict[str, float] | None:
    """``{image name: distance}`` for the source images under ``source_root`` (a toy
    benchmark's ``gta5`` or ``synthia`` folder), from the toy's ``toy_looks.csv``; None when
    the root is not part of a toy benchmark that records them. A damaged file is an error
    naming it."""
    import pandas as pd

    root = Path(source_root)
    path = root.parent / LOOKS_FILE
    if not path.is_file() or not (root.parent / "toy.json").is_file():
        return None
    try:
        table = pd.read_csv(path)
        table = table[table["dataset"] == root.name]
        return dict(zip(table["name"].astype(str), table["distance"].astype(float), strict=True))
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise DataError(
            f"toy metadata {path} is damaged ({type(exc).__name__}); write the toy benchmark "
            "again (pixda toy --out FOLDER --force)"
        ) from None


def toy_manifest(root: str | os.PathLike) -> tuple[Path, dict | None] | None:
    """The ``toy.json`` of the toy benchmark that ``root`` is (or one of whose datasets it
    is), with its contents (None when unreadable); None when ``root`` is not a toy's."""
    root = Path(root)
    for folder in (root, root.parent):
        path = folder / "toy.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = None
            return path, data if isinstance(data, dict) else None
    return None


def check_current(root: str | os.PathLike, fix: str | None = None) -> dict | None:
    """Refuse a toy benchmark written by another version of the generator (its scenes are
    not this kit's: results on it would be mixed with results on the current one); returns
    its spec (None when ``root`` is not a toy's). ``fix`` replaces the advice given."""
    found = toy_manifest(root)
    if found is None:
        return None
    path, data = found
    version = data.get("version") if data else None
    if version == FORMAT_VERSION:
        return data
    what = f"format {version}" if isinstance(version, int) else "an unreadable toy.json"
    folder = path.parent
    raise DataError(
        f"{folder} holds a toy benchmark of {what} ({path}); this kit writes and reads format "
        f"{FORMAT_VERSION}. "
        + (
            fix
            or f"Write it again with `pixda toy --out {folder} --force` (same options), and "
            "start new run folders: runs and source-only models made on the old one do not "
            "compare with the new one"
        )
    )


#: what :func:`generate` writes first into the folder it fills (:func:`partial_dir`): the spec
#: being written, so that the next run with the same spec finishes it
PARTIAL_FILE = "toy-partial.json"
#: the lock that keeps a second run out of that folder while one writes it
PARTIAL_LOCK = "toy-partial.lock"
_SOURCE_DIRS = ("gta5/images", "gta5/labels", "synthia/RGB", "synthia/GT/LABELS")
_TOY_DIR = re.compile(
    r"gta5(/images|/labels)?|synthia(/RGB|/GT(/LABELS)?)?"
    r"|cityscapes(/(leftImg8bit|gtFine)(/(train|val)(/[a-z_]+)?)?)?"
)
_TOY_FILE = re.compile(
    r"gta5/(images|labels)/\d{5}\.png|synthia/(RGB|GT/LABELS)/\d{7}\.png"
    r"|cityscapes/(leftImg8bit|gtFine)/(train|val)/([a-z_]+)/\5_\d{6}_000019"
    r"_(leftImg8bit|gtFine_labelIds)\.png|" + re.escape(LOOKS_FILE)
)


def partial_dir(out: str | os.PathLike) -> Path:
    """The hidden sibling of ``out`` that :func:`generate` writes into and renames to ``out``
    once complete, so that nothing half-written is ever at ``out``."""
    out = Path(os.path.abspath(out))
    return out.with_name(f".{out.name}.toy-partial")


def _unfinished_in_place(out: Path) -> bool:
    """Whether ``out`` is what a generator that wrote in place (before :func:`partial_dir`)
    left when stopped part-way: the source folders it made first, only files it writes, no
    toy.json."""
    if (out / "toy.json").exists() or not all((out / d).is_dir() for d in _SOURCE_DIRS):
        return False
    for folder, dirs, files in os.walk(out):
        rel = Path(folder).relative_to(out)
        if any(not _TOY_DIR.fullmatch((rel / d).as_posix()) for d in dirs):
            return False
        if any(not _TOY_FILE.fullmatch((rel / f).as_posix()) for f in files):
            return False
    return True


def _up_to_date(out: Path, spec: ToySpec) -> bool:
    """True when ``out`` holds the complete toy benchmark of ``spec``; False when ``out`` is
    missing or an empty folder; anything else is refused, naming what is there."""
    manifest = out / "toy.json"
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            old = None
        if old == spec.to_dict():
            return True
        check_current(out)  # an older generator's: say so, and how to replace it
        raise DataError(
            f"{out} already holds a toy benchmark written with other settings ({manifest}); "
            "choose another --out or pass --force to replace it"
        )
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file, not a folder; choose a new --out folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        return False
    if _unfinished_in_place(out):
        raise DataError(
            f"{out} holds an unfinished toy benchmark (gta5/ and synthia/ but no toy.json: a "
            "`pixda toy` stopped part-way); pass --force to replace it, or choose another --out"
        )
    held = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise DataError(
        f"{out} is not empty and is not a toy benchmark (it holds {held}, no toy.json); "
        "choose an empty or new --out folder (--force replaces only a toy benchmark)"
    )


def _resume_point(tmp: Path, scenes: list) -> int:
    """The first scene to write into ``tmp``: scenes are written in order, so every scene
    before the first one with a missing file is complete except perhaps the last (a run
    killed while writing it): that one is written again."""
    for k, (domain, _, name) in enumerate(scenes):
        if not all(p.is_file() for p in scene_paths(tmp, domain, name)):
            return max(0, k - 1)
    return max(0, len(scenes) - 1)


def generate(out: str | os.PathLike, spec: ToySpec = ToySpec(), progress: bool = True) -> Path:
    """Write the toy benchmark described by ``spec`` under ``out``; returns ``out``.

    An existing folder written with the same spec is left as it is; one written with another
    spec, or holding something else, is refused (pass it to :func:`remove_toy` first). The
    scenes are written into :func:`partial_dir`, renamed to ``out`` when complete: a run
    stopped part-way leaves nothing at ``out``, and the next run finishes what it wrote when
    the spec is the same (it starts afresh otherwise). Two runs never write it at once.
    """
    from ..locks import held

    out = Path(out)
    if _up_to_date(out, spec):
        _drop_partial_files(out)  # left by a run killed as it renamed the folder
        return out
    tmp = partial_dir(out)
    tmp.mkdir(parents=True, exist_ok=True)

    def busy():
        print(f"waiting for another `pixda toy` writing {out} (into {tmp})", file=sys.stderr)

    with held(tmp / PARTIAL_LOCK, busy):
        if _up_to_date(out, spec):  # written by the run this one waited for
            shutil.rmtree(tmp, ignore_errors=True)
            return out
        marker, scenes, start = tmp / PARTIAL_FILE, list(iter_scenes(spec)), 0
        try:
            same = json.loads(marker.read_text()) == spec.to_dict()
        except (OSError, ValueError):
            same = False
        if same:
            start = _resume_point(tmp, scenes)
        else:  # another spec's, or nothing yet: start afresh
            for entry in tmp.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                elif entry.name != PARTIAL_LOCK:
                    entry.unlink()
            marker.write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
        for sub in _SOURCE_DIRS:
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        for domain, index, name in tqdm(
            scenes[start:],
            desc=f"toy benchmark -> {out}",
            initial=start,
            total=len(scenes),
            disable=not progress,
        ):
            image, classes, instances = make_scene(
                domain, index, spec.seed, spec.size, spec.gap, spec.mixed_share
            )
            write_scene(tmp, domain, name, image, classes, instances)
        write_look_distances(tmp, spec)
        (tmp / "toy.json").write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
        if out.is_dir():
            out.rmdir()  # an empty folder made beforehand
        os.rename(tmp, out)
        _drop_partial_files(out)
    return out


def _drop_partial_files(out: Path) -> None:
    for name in (PARTIAL_FILE, PARTIAL_LOCK):
        if (out / name).exists():
            (out / name).unlink(missing_ok=True)


def remove_toy(out: str | os.PathLike) -> None:
    """Delete a toy benchmark folder (only one that ``generate`` wrote: it has toy.json, or
    it is what a generator that wrote in place left when stopped part-way)."""
    out = Path(out)
    if not (out / "toy.json").is_file() and not _unfinished_in_place(out):
        raise DataError(
            f"{out} has no toy.json; refusing to delete a folder the generator did not write"
        )
    shutil.rmtree(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="pixda toy",
        description="Write the toy synthetic-to-real benchmark (GTA5, SYNTHIA and Cityscapes "
        "layouts). A stand-in for trying the kit, not real data.",
    )
    p.add_argument("--out", default="data/toy", help="output folder (default: data/toy)")
    p.add_argument("--seed", type=int, default=ToySpec.seed, help="random seed (default: 0)")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        default=ToySpec.size,
        help="toy Cityscapes image size; the sources keep their real size ratio "
        "to it (default: 256 128; 2048 1024 gives the real sizes)",
    )
    p.add_argument(
        "--gap",
        type=float,
        default=ToySpec.gap,
        help="appearance domain shift, 0 (none) to 1 (default) or more",
    )
    p.add_argument(
        "--num-gta5",
        type=int,
        default=ToySpec.num_gta5,
        metavar="N",
        help=f"GTA5 images (default: {ToySpec.num_gta5})",
    )
    p.add_argument(
        "--num-synthia",
        type=int,
        default=ToySpec.num_synthia,
        metavar="N",
        help=f"SYNTHIA images (default: {ToySpec.num_synthia})",
    )
    p.add_argument(
        "--train-per-city",
        type=int,
        default=ToySpec.train_per_city,
        metavar="N",
        help=f"Cityscapes train images per city, 18 cities (default: {ToySpec.train_per_city})",
    )
    p.add_argument(
        "--val-per-city",
        type=int,
        default=ToySpec.val_per_city,
        metavar="N",
        help=f"Cityscapes val images per city, 3 cities (default: {ToySpec.val_per_city})",
    )
    p.add_argument("--force", action="store_true", help="replace a toy folder written before")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    return _main(args)


@run_cli
def _main(args) -> int:
    w, h = args.size
    if not (8 <= w <= 2048 and 8 <= h <= 1024):
        raise PixdaError(f"--size {w} {h}: expected W in 8..2048 and H in 8..1024")
    if args.gap < 0:
        raise PixdaError(f"--gap {args.gap}: expected a value >= 0")
    for flag in ("num_gta5", "num_synthia", "train_per_city", "val_per_city"):
        if getattr(args, flag) < 1:
            raise PixdaError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: expected >= 1")
    spec = ToySpec(
        args.seed,
        (w, h),
        args.gap,
        args.num_gta5,
        args.num_synthia,
        args.train_per_city,
        args.val_per_city,
    )
    out = Path(args.out)
    if args.force and ((out / "toy.json").is_file() or _unfinished_in_place(out)):
        remove_toy(out)
    existed = (out / "toy.json").is_file()
    generate(out, spec, progress=not args.quiet)
    print(
        f"toy benchmark {'up to date' if existed else 'written'}: {out} "
        f"(gta5 {spec.num_gta5}, synthia {spec.num_synthia}, cityscapes train "
        f"{18 * spec.train_per_city} / val {3 * spec.val_per_city}, seed {spec.seed}, "
        f"size {w}x{h}, gap {spec.gap})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
