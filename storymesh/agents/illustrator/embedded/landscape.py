"""The embedded painter's settings: sky, landscape and weather for each kind of place.

`paint_setting()` draws the sky (its colours by time of day and weather, with sun, moon,
stars or clouds) and the place (forest, beach, castle...) back to front, and returns a
`Stage`: where the figures stand, how tall they are, where water is, and what must be drawn
in front of them (a boat's hull, framing trees). `paint_weather()` adds rain, snow, fog or a
storm over everything.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from storymesh.agents.illustrator.embedded import props
from storymesh.agents.illustrator.embedded.canvas import Canvas, mix, shade
from storymesh.agents.illustrator.embedded.scene import Scene
from storymesh.agents.illustrator.styles import RGB

Stops = list[tuple[float, RGB]]

SKIES: dict[str, Stops] = {
    "day": [(0.0, (90, 160, 235)), (1.0, (200, 230, 250))],
    "morning": [(0.0, (120, 170, 230)), (0.65, (235, 212, 205)), (1.0, (255, 212, 165))],
    "sunset": [(0.0, (60, 55, 130)), (0.55, (225, 105, 110)), (1.0, (252, 175, 85))],
    "night": [(0.0, (8, 12, 40)), (1.0, (42, 58, 115))],
}
GLOOMY: dict[str, Stops] = {
    "day": [(0.0, (105, 115, 132)), (1.0, (178, 183, 192))],
    "night": [(0.0, (14, 16, 28)), (1.0, (48, 54, 74))],
}
GRASS: RGB = (110, 180, 80)
SAND: RGB = (240, 212, 158)
SNOW: RGB = (236, 242, 252)
SEA: RGB = (45, 125, 200)


@dataclass(slots=True)
class Stage:
    """What the setting tells the figure painter."""

    ground: float  # y where ground figures stand
    figure_h: float  # standard figure height in pixels
    horizon: float
    water: tuple[float, float] | None = None  # y band where fish swim
    front: Callable[[], None] | None = None  # drawn after the figures
    spots: tuple[float, ...] | None = None  # x positions (fractions) for figures


def _night(scene: Scene) -> bool:
    return scene.time == "night"


def _sky_stops(scene: Scene) -> Stops:
    if scene.weather in ("rain", "storm"):
        stops = GLOOMY["night" if _night(scene) else "day"]
        if scene.weather == "storm":
            stops = [(t, shade(rgb, 0.7)) for t, rgb in stops]
    else:
        stops = SKIES[scene.time]
    if scene.weather == "fog":
        stops = [(t, mix(rgb, (215, 220, 226), 0.55)) for t, rgb in stops]
    if scene.snowy and not _night(scene):
        stops = [(t, mix(rgb, (225, 232, 242), 0.35)) for t, rgb in stops]
    return stops


def paint_sky(c: Canvas, scene: Scene, rng: random.Random, horizon: float) -> None:
    """Sky gradient, then sun/moon/stars and clouds as the time and weather allow."""
    stops = _sky_stops(scene)
    c.gradient(0, horizon, stops)
    # Below the horizon the sky colour carries on, so no ridge can leave a gap.
    c.rect(0, horizon - 1, c.w, c.h, stops[-1][1], glow=True, line=False)
    clear = scene.weather in ("clear", "sunny")
    if "rainbow" in scene.props and not _night(scene):
        props.rainbow(c, c.w * 0.5, horizon + c.h * 0.05, c.w * 0.42)
    if _night(scene):
        if clear or scene.weather == "fog":
            _stars(c, rng, horizon, 45 if clear else 12)
            _moon(c, c.w * 0.78, c.h * 0.17, c.u * 0.065, _sky_stops(scene)[0][1])
    elif clear:
        _sun(c, scene, horizon)
    if scene.weather in ("rain", "storm"):
        grey = (95, 100, 115) if scene.weather == "rain" else (60, 62, 75)
        for k in range(9):
            props.cloud(c, c.w * (k / 8) + rng.uniform(-20, 20), c.h * rng.uniform(0.02, 0.1),
                        c.u * 0.16, shade(grey, 0.6 if _night(scene) else 1.0))
    elif scene.weather == "snow" and not _night(scene):
        for k in range(4):
            props.cloud(c, c.w * (0.1 + 0.27 * k), c.h * rng.uniform(0.05, 0.14), c.u * 0.12,
                        (225, 228, 236))
    elif clear and not _night(scene):
        for k in range(rng.randint(2, 3)):
            props.cloud(c, c.w * (0.1 + 0.26 * k + rng.uniform(-0.04, 0.04)),
                        c.h * rng.uniform(0.08, 0.25), c.u * rng.uniform(0.07, 0.1))


def _sun(c: Canvas, scene: Scene, horizon: float) -> None:
    if scene.time == "sunset":
        x, y, r, rgb = c.w * 0.7, horizon - c.h * 0.12, c.u * 0.1, (240, 95, 60)
    elif scene.time == "morning":
        x, y, r, rgb = c.w * 0.2, min(horizon - c.h * 0.16, c.h * 0.2), c.u * 0.07, \
            (255, 225, 120)
    else:
        x, y, r, rgb = c.w * 0.82, c.h * 0.15, c.u * 0.075, (255, 215, 70)
    c.halo(x, y, r * 2.2, rgb, alpha=40)
    if scene.time == "day":
        for k in range(10):
            a = k * math.tau / 10
            c.stroke([(x + math.cos(a) * r * 1.3, y + math.sin(a) * r * 1.3),
                      (x + math.cos(a) * r * 1.65, y + math.sin(a) * r * 1.65)], rgb,
                     r * 0.12, glow=True)
    c.circle(x, y, r, rgb, glow=True)


def _moon(c: Canvas, x: float, y: float, r: float, sky: RGB) -> None:
    c.halo(x, y, r * 2.4, (230, 230, 200), alpha=30)
    c.circle(x, y, r, (250, 245, 215), glow=True, line=False)
    c.circle(x + r * 0.45, y - r * 0.25, r * 0.85, sky, glow=True, line=False)


def _stars(c: Canvas, rng: random.Random, horizon: float, count: int) -> None:
    for k in range(count):
        x, y = rng.uniform(0, c.w), rng.uniform(0, horizon * 0.85)
        if k % 6 == 0:
            props.star(c, x, y, c.u * rng.uniform(0.012, 0.02))
        else:
            r = c.u * rng.uniform(0.002, 0.005)
            c.circle(x, y, r, (255, 250, 220), glow=True, line=False)


def _far(c: Canvas, scene: Scene, rgb: RGB, amount: float) -> RGB:
    """Atmospheric perspective: far things fade towards the horizon's sky colour."""
    return mix(rgb, _sky_stops(scene)[-1][1], amount)


def _ground(scene: Scene, rgb: RGB = GRASS) -> RGB:
    return SNOW if scene.snowy else rgb


# -- settings ------------------------------------------------------------------------------
def _forest(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.56
    paint_sky(c, scene, rng, horizon)
    green = (60, 125, 80)
    props.hills(c, horizon + c.h * 0.03, c.h * 0.03, _far(c, scene, (110, 160, 115), 0.4), rng)
    for k in range(16):
        x = c.w * (k + rng.uniform(0.1, 0.9)) / 16
        props.pine(c, x, horizon + c.h * rng.uniform(0.05, 0.08), c.h * rng.uniform(0.2, 0.3),
                   _far(c, scene, green, 0.35), scene.snowy)
    props.hills(c, c.h * 0.66, c.h * 0.015, _ground(scene, (95, 165, 75)), rng)
    c.poly([(c.w * 0.46, c.h * 0.66), (c.w * 0.54, c.h * 0.66), (c.w * 0.8, c.h * 1.01),
            (c.w * 0.2, c.h * 1.01)], (205, 175, 125), line=False)
    for x in (0.1, 0.27, 0.73, 0.9):
        maker = props.pine if rng.random() < 0.5 else props.round_tree
        maker(c, c.w * (x + rng.uniform(-0.04, 0.04)), c.h * rng.uniform(0.7, 0.74),
              c.h * rng.uniform(0.36, 0.46), green, scene.snowy)
    _scatter(c, rng, c.h * 0.74, c.h * 0.98, 10, scene, mushrooms=True)

    def front() -> None:
        props.round_tree(c, -c.w * 0.04, c.h * 1.02, c.h * 0.95, (50, 115, 70), scene.snowy)
    return Stage(ground=c.h * 0.9, figure_h=c.h * 0.3, horizon=horizon, front=front)


def _garden(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.58
    paint_sky(c, scene, rng, horizon)
    props.hills(c, horizon + c.h * 0.02, c.h * 0.05, _far(c, scene, (140, 195, 110), 0.4), rng)
    for k in range(3):
        props.round_tree(c, c.w * (0.15 + k * 0.35 + rng.uniform(-0.05, 0.05)),
                         horizon + c.h * 0.06, c.h * 0.2, _far(c, scene, (80, 150, 80), 0.3),
                         scene.snowy)
    props.hills(c, c.h * 0.7, c.h * 0.03, _ground(scene), rng)
    post = (230, 215, 190)
    for k in range(12):
        x = c.w * k / 11
        c.rect(x - c.u * 0.008, c.h * 0.68, x + c.u * 0.008, c.h * 0.76, post, line=False)
    for y in (0.7, 0.735):
        c.rect(0, c.h * y, c.w, c.h * y + c.u * 0.01, post, line=False)
    _scatter(c, rng, c.h * 0.78, c.h * 0.99, 26, scene)
    if not _night(scene) and scene.weather == "clear":
        for _ in range(3):
            props.butterfly(c, rng.uniform(0.1, 0.9) * c.w, rng.uniform(0.4, 0.6) * c.h,
                            c.u * 0.02, rng.choice(props.FLOWER_COLOURS))
    return Stage(ground=c.h * 0.9, figure_h=c.h * 0.32, horizon=horizon)


def _beach(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.48
    paint_sky(c, scene, rng, horizon)
    c.gradient(horizon, c.h * 0.7, [(0.0, _far(c, scene, SEA, 0.15)),
                                    (1.0, mix(SEA, (90, 200, 220), 0.6))])
    if "boat" in scene.props:
        props.boat(c, c.w * 0.25, horizon + c.h * 0.05, c.u * 0.12)
        props.hull(c, c.w * 0.25, horizon + c.h * 0.05, c.u * 0.12)
    props.waves(c, rng, horizon + c.h * 0.02, c.h * 0.64, 22)
    top = props.hills(c, c.h * 0.68, c.h * 0.012, SAND, rng, waves=1.0)
    c.stroke(top, (250, 250, 245), c.u * 0.012)
    props.palm(c, c.w * 0.1, c.h * 0.82, c.h * 0.55)
    for _ in range(5):
        x, y = rng.uniform(0.05, 0.95) * c.w, rng.uniform(0.78, 0.98) * c.h
        colour = rng.choice(((250, 180, 160), (245, 225, 200), (240, 140, 90)))
        props.star(c, x, y, c.u * 0.018, colour)
    return Stage(ground=c.h * 0.9, figure_h=c.h * 0.3, horizon=horizon)


def _sea(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.46
    paint_sky(c, scene, rng, horizon)
    c.gradient(horizon, c.h, [(0.0, _far(c, scene, SEA, 0.15)), (1.0, shade(SEA, 0.75))])
    props.hills(c, horizon + c.h * 0.005, c.h * 0.02, _far(c, scene, (80, 140, 90), 0.4), rng,
                waves=0.6)
    c.gradient(horizon + c.h * 0.015, c.h, [(0.0, _far(c, scene, SEA, 0.1)),
                                            (1.0, shade(SEA, 0.75))])
    props.waves(c, rng, horizon + c.h * 0.02, c.h * 0.98, 40)
    deck, width = c.h * 0.83, c.w * 0.62
    props.boat(c, c.w * 0.5, deck, width)

    def front() -> None:
        props.hull(c, c.w * 0.5, deck, width)
        props.waves(c, rng, c.h * 0.9, c.h * 1.0, 10)
    return Stage(ground=deck + c.h * 0.03, figure_h=c.h * 0.3, horizon=horizon,
                 water=(c.h * 0.88, c.h * 0.98), front=front,
                 spots=(0.36, 0.52, 0.66, 0.8))


def _underwater(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    top = (90, 190, 225) if not _night(scene) else (30, 60, 120)
    c.gradient(0, c.h, [(0.0, top), (1.0, (15, 70, 130))])
    for k in range(5):  # light shafts from the surface
        x = c.w * (0.1 + k * 0.2 + rng.uniform(-0.05, 0.05))
        c.draw.polygon([(x, 0), (x + c.w * 0.06, 0), (x + c.w * 0.2, c.h), (x + c.w * 0.1, c.h)],
                       fill=(*c.paint((220, 245, 255), glow=True), 28))
    props.hills(c, c.h * 0.82, c.h * 0.02, (225, 205, 150), rng)
    for _ in range(9):
        x, h = rng.uniform(0, 1) * c.w, c.h * rng.uniform(0.15, 0.35)
        pts = [(x + math.sin(t * 1.3 + x) * c.u * 0.02, c.h * 0.86 - h * t / 6) for t in range(7)]
        c.stroke(pts, (50, 150, 90), c.u * 0.014)
    for x in (0.12, 0.85):
        for k in range(5):
            a = math.pi * (0.2 + 0.15 * k)
            c.stroke([(c.w * x, c.h * 0.86), (c.w * x + math.cos(a) * c.u * 0.12,
                                              c.h * 0.86 - math.sin(a) * c.u * 0.14)],
                     (240, 110, 130), c.u * 0.018)
    for _ in range(4):  # a small shoal far off
        x, y = c.w * rng.uniform(0.1, 0.9), c.h * rng.uniform(0.15, 0.55)
        body = _far(c, scene, rng.choice(((250, 200, 60), (120, 200, 230), (240, 120, 150))),
                    0.3)
        c.ellipse(x, y, c.u * 0.03, c.u * 0.016, body, line=False)
        c.poly([(x - c.u * 0.025, y), (x - c.u * 0.045, y - c.u * 0.014),
                (x - c.u * 0.045, y + c.u * 0.014)], body, line=False)
    for _ in range(18):
        r = c.u * rng.uniform(0.005, 0.015)
        c.arc(rng.uniform(0, c.w), rng.uniform(0, c.h * 0.8), r, r, 0, 360, (230, 245, 255),
              max(1.0, r * 0.3), glow=True)
    return Stage(ground=c.h * 0.92, figure_h=c.h * 0.3, horizon=0.0,
                 water=(c.h * 0.25, c.h * 0.6))


def _castle(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.6
    paint_sky(c, scene, rng, horizon)
    props.hills(c, horizon + c.h * 0.03, c.h * 0.03, _far(c, scene, (120, 170, 110), 0.45), rng)
    c.ellipse(c.w * 0.5, c.h * 0.62, c.w * 0.42, c.h * 0.1, _ground(scene, (100, 165, 80)),
              line=False)
    props.castle(c, c.w * 0.5, c.h * 0.58, c.h * 0.38, _night(scene))
    props.hills(c, c.h * 0.7, c.h * 0.015, _ground(scene), rng)
    c.poly([(c.w * 0.47, c.h * 0.6), (c.w * 0.53, c.h * 0.6), (c.w * 0.7, c.h * 1.01),
            (c.w * 0.3, c.h * 1.01)], (215, 190, 140), line=False)
    for x in (0.1, 0.9):
        props.round_tree(c, c.w * x, c.h * 0.75, c.h * 0.35, (70, 140, 75), scene.snowy)
    _scatter(c, rng, c.h * 0.78, c.h * 0.99, 12, scene)
    return Stage(ground=c.h * 0.91, figure_h=c.h * 0.28, horizon=horizon)


def _village(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.58
    paint_sky(c, scene, rng, horizon)
    props.hills(c, horizon + c.h * 0.02, c.h * 0.04, _far(c, scene, (125, 175, 110), 0.4), rng)
    props.hills(c, c.h * 0.68, c.h * 0.01, _ground(scene), rng)
    walls = ((245, 225, 190), (235, 190, 170), (210, 225, 240), (250, 240, 210))
    roofs = ((200, 70, 60), (90, 110, 170), (160, 90, 60), (110, 150, 90))
    for k in range(5):
        x = c.w * (0.1 + k * 0.2)
        if k % 2:
            props.round_tree(c, x + c.w * 0.1, c.h * 0.7, c.h * 0.24, (80, 150, 80),
                             scene.snowy)
        props.house(c, x, c.h * 0.71 + (k % 2) * c.h * 0.02, c.w * rng.uniform(0.15, 0.18),
                    walls[k % 4], roofs[(k + 1) % 4], _night(scene))
    c.rect(0, c.h * 0.76, c.w, c.h * 0.84, (200, 190, 175), line=False)
    for k in range(14):
        c.ellipse(c.w * (k + 0.5) / 14, c.h * 0.8, c.w * 0.025, c.h * 0.012,
                  (180, 170, 155), line=False)
    _scatter(c, rng, c.h * 0.86, c.h * 0.99, 10, scene)
    return Stage(ground=c.h * 0.92, figure_h=c.h * 0.28, horizon=horizon)


def _mountain(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.68
    paint_sky(c, scene, rng, horizon)
    for k in range(4):
        props.mountain(c, c.w * (k * 0.33 + rng.uniform(-0.05, 0.05)), horizon,
                       c.w * 0.55, c.h * rng.uniform(0.35, 0.45),
                       _far(c, scene, (120, 135, 170), 0.45))
    for k in range(3):
        props.mountain(c, c.w * (0.15 + k * 0.38 + rng.uniform(-0.05, 0.05)), horizon + c.h * 0.04,
                       c.w * 0.5, c.h * rng.uniform(0.25, 0.33),
                       _far(c, scene, (95, 110, 150), 0.2))
    props.hills(c, c.h * 0.74, c.h * 0.03, _ground(scene, (105, 165, 85)), rng)
    for x in (0.06, 0.16, 0.84, 0.94):
        props.pine(c, c.w * x, c.h * rng.uniform(0.8, 0.84), c.h * 0.3, (55, 115, 75),
                   scene.snowy)
    _scatter(c, rng, c.h * 0.82, c.h * 0.99, 10, scene)
    return Stage(ground=c.h * 0.91, figure_h=c.h * 0.28, horizon=horizon)


def _space(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    c.gradient(0, c.h, [(0.0, (5, 6, 22)), (1.0, (35, 25, 70))])
    _stars(c, rng, c.h, 90)
    px, py, pr = c.w * 0.75, c.h * 0.22, c.u * 0.1
    c.circle(px, py, pr, (225, 160, 90), glow=True)
    c.rect(px - pr, py - pr * 0.15, px + pr, py + pr * 0.1, (240, 190, 120), glow=True,
           radius=pr * 0.1, line=False)
    c.arc(px, py, pr * 1.7, pr * 0.4, 0, 360, (235, 215, 170), pr * 0.12, glow=True)
    c.circle(c.w * 0.18, c.h * 0.15, c.u * 0.06, (80, 140, 230), glow=True)
    c.ellipse(c.w * 0.17, c.h * 0.14, c.u * 0.03, c.u * 0.02, (90, 180, 100), glow=True,
              line=False)
    c.circle(c.w * 0.45, c.h * 0.1, c.u * 0.02, (200, 120, 200), glow=True)
    props.hills(c, c.h * 0.76, c.h * 0.02, (175, 175, 185), rng)
    for _ in range(7):
        x, y = rng.uniform(0.05, 0.95) * c.w, rng.uniform(0.8, 0.98) * c.h
        r = c.u * rng.uniform(0.02, 0.05)
        c.ellipse(x, y, r, r * 0.35, (140, 140, 150))
    if "rocket" in scene.props:
        props.rocket(c, c.w * 0.12, c.h * 0.86, c.h * 0.4)
    return Stage(ground=c.h * 0.92, figure_h=c.h * 0.3, horizon=c.h * 0.76)


def _city(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.72
    paint_sky(c, scene, rng, horizon)
    night = _night(scene)
    for layer, (shade_k, hmin, hmax) in enumerate(((0.45, 0.25, 0.45), (0.0, 0.18, 0.38))):
        x = -rng.uniform(0, c.w * 0.05)
        while x < c.w:
            w = c.w * rng.uniform(0.08, 0.14)
            top = horizon - c.h * rng.uniform(hmin, hmax)
            wall = _far(c, scene, rng.choice(((170, 150, 170), (150, 165, 190), (190, 160, 140),
                                              (140, 150, 160))), shade_k)
            c.rect(x, top, x + w - c.u * 0.006, horizon + c.h * 0.02, wall)
            if layer:
                _windows(c, rng, x, top, w, horizon, night)
            x += w
    c.rect(0, horizon, c.w, c.h * 0.84, (195, 195, 200), line=False)
    c.rect(0, c.h * 0.84, c.w, c.h, (90, 90, 100), line=False)
    for k in range(6):
        c.rect(c.w * (k / 6 + 0.03), c.h * 0.915, c.w * (k / 6 + 0.11), c.h * 0.93,
               (240, 230, 150), line=False)
    for x in (0.08, 0.92):
        c.stroke([(c.w * x, c.h * 0.84), (c.w * x, c.h * 0.5)], (60, 60, 70), c.u * 0.012)
        c.circle(c.w * x, c.h * 0.5, c.u * 0.025, (255, 225, 130), glow=night)
        if night:
            c.halo(c.w * x, c.h * 0.5, c.u * 0.12, (255, 215, 120), alpha=40)
    return Stage(ground=c.h * 0.84, figure_h=c.h * 0.27, horizon=horizon)


def _windows(c: Canvas, rng: random.Random, x: float, top: float, w: float, bottom: float,
             night: bool) -> None:
    size = c.u * 0.022
    y = top + size
    while y < bottom - size * 2:
        for k in range(max(1, int(w / (size * 2)))):
            lit = night and rng.random() < 0.6
            rgb = props.WINDOW_LIT if lit else (120, 150, 185)
            wx = x + size * 0.6 + k * size * 2
            c.rect(wx, y, wx + size, y + size * 1.2, rgb, glow=lit, line=False)
        y += size * 2.2


def _cave(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.62
    paint_sky(c, scene, rng, horizon)
    props.hills(c, horizon, c.h * 0.04, _far(c, scene, (110, 160, 110), 0.3), rng)
    rock, dark = (95, 82, 92), (62, 52, 62)
    c.poly([(0, 0), (c.w, 0), (c.w, c.h), (c.w * 0.82, c.h), (c.w * 0.8, c.h * 0.55),
            (c.w * 0.72, c.h * 0.3), (c.w * 0.55, c.h * 0.2), (c.w * 0.4, c.h * 0.22),
            (c.w * 0.26, c.h * 0.33), (c.w * 0.2, c.h * 0.55), (c.w * 0.18, c.h),
            (0, c.h)], rock, line=False)
    c.poly([(0, 0), (c.w, 0), (c.w, c.h * 0.12), (c.w * 0.6, c.h * 0.1), (c.w * 0.3, c.h * 0.14),
            (0, c.h * 0.2)], dark, line=False)
    for k in range(11):  # stalactites along the ceiling
        x = c.w * (k + 0.5) / 11
        y = c.h * (0.12 + 0.06 * math.sin(k * 1.7)) + (c.h * 0.08 if 0.25 < k / 11 < 0.75 else 0)
        c.poly([(x - c.u * 0.025, y - c.h * 0.05), (x + c.u * 0.025, y - c.h * 0.05),
                (x, y + c.h * rng.uniform(0.04, 0.1))], dark, line=False)
    c.rect(0, c.h * 0.76, c.w, c.h, shade(rock, 0.8), line=False)
    for x, y, colour in ((0.08, 0.6, (170, 110, 240)), (0.9, 0.45, (90, 220, 230)),
                         (0.92, 0.8, (170, 110, 240)), (0.1, 0.9, (90, 220, 230))):
        cx, cy = c.w * x, c.h * y
        c.halo(cx, cy, c.u * 0.09, colour, alpha=40)
        for dx, h in ((-0.02, 0.07), (0.0, 0.1), (0.02, 0.06)):
            c.poly([(cx + dx * c.u - c.u * 0.012, cy), (cx + dx * c.u + c.u * 0.012, cy),
                    (cx + dx * c.u, cy - h * c.u)], colour, glow=True)
    return Stage(ground=c.h * 0.92, figure_h=c.h * 0.3, horizon=horizon)


def _desert(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.62
    paint_sky(c, scene, rng, horizon)
    for k, x in enumerate((0.3, 0.45)):
        size = c.h * (0.2 - k * 0.06)
        base = horizon + c.h * 0.02
        c.poly([(c.w * x - size, base), (c.w * x, base - size), (c.w * x + size, base)],
               _far(c, scene, (225, 190, 120), 0.3), line=False)
        c.poly([(c.w * x, base - size), (c.w * x + size, base), (c.w * x + size * 0.3, base)],
               _far(c, scene, (195, 155, 95), 0.3), line=False)
    for k, tone in enumerate(((235, 195, 125), (242, 208, 145), (228, 182, 110))):
        props.hills(c, c.h * (0.66 + k * 0.08), c.h * 0.03, tone, rng, waves=1.2)
    for x, h in ((0.12, 0.3), (0.85, 0.24)):
        props.cactus(c, c.w * x, c.h * (0.82 + h * 0.2), c.h * h)
    return Stage(ground=c.h * 0.92, figure_h=c.h * 0.3, horizon=horizon)


def _snow(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    horizon = c.h * 0.6
    paint_sky(c, scene, rng, horizon)
    for k in range(3):
        props.mountain(c, c.w * (0.15 + k * 0.35), horizon + c.h * 0.02, c.w * 0.5,
                       c.h * rng.uniform(0.25, 0.35), _far(c, scene, (150, 165, 195), 0.4))
    props.hills(c, horizon + c.h * 0.06, c.h * 0.04, (215, 228, 245), rng)
    for k in range(7):
        props.pine(c, c.w * (0.05 + k * 0.15 + rng.uniform(-0.03, 0.03)),
                   horizon + c.h * rng.uniform(0.08, 0.12), c.h * 0.2, (55, 105, 85), True)
    props.hills(c, c.h * 0.76, c.h * 0.02, SNOW, rng)
    props.snowman(c, c.w * 0.88, c.h * 0.88, c.h * 0.3)
    return Stage(ground=c.h * 0.92, figure_h=c.h * 0.3, horizon=horizon,
                 spots=(0.2, 0.4, 0.6, 0.72))


def _room(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    wall = (245, 225, 195)
    c.rect(0, 0, c.w, c.h * 0.72, wall, line=False)
    for k in range(12):
        c.rect(c.w * k / 12, 0, c.w * k / 12 + c.w * 0.03, c.h * 0.72, shade(wall, 0.95),
               line=False)
    wx0, wy0, wx1, wy1 = c.w * 0.1, c.h * 0.12, c.w * 0.42, c.h * 0.5
    sky = _sky_stops(scene)
    c.rect(wx0, wy0, wx1, wy1, sky[0][1], glow=True)
    c.rect(wx0, (wy0 + wy1) / 2, wx1, wy1, sky[-1][1], glow=True, line=False)
    if _night(scene):
        _moon(c, wx0 + (wx1 - wx0) * 0.7, wy0 + (wy1 - wy0) * 0.3, c.u * 0.045, sky[0][1])
        for _ in range(6):
            props.star(c, rng.uniform(wx0, wx1), rng.uniform(wy0, wy1), c.u * 0.01)
    frame = (250, 250, 245)
    c.stroke([((wx0 + wx1) / 2, wy0), ((wx0 + wx1) / 2, wy1)], frame, c.u * 0.012)
    c.stroke([(wx0, (wy0 + wy1) / 2), (wx1, (wy0 + wy1) / 2)], frame, c.u * 0.012)
    for x in (wx0 - c.w * 0.04, wx1 - c.w * 0.02):
        c.poly([(x, wy0 - c.h * 0.03), (x + c.w * 0.06, wy0 - c.h * 0.03),
                (x + c.w * 0.05, wy1 + c.h * 0.06), (x + c.w * 0.01, wy1 + c.h * 0.06)],
               (200, 90, 100))
    c.rect(0, c.h * 0.72, c.w, c.h, (185, 135, 90), line=False)
    for k in range(6):
        c.stroke([(0, c.h * (0.76 + k * 0.05)), (c.w, c.h * (0.76 + k * 0.05))],
                 (160, 112, 72), c.u * 0.004)
    c.ellipse(c.w * 0.45, c.h * 0.9, c.w * 0.32, c.h * 0.07, (120, 170, 210), line=False)
    c.rect(c.w * 0.66, c.h * 0.38, c.w * 0.7, c.h * 0.82, (150, 100, 70))
    c.rect(c.w * 0.66, c.h * 0.62, c.w * 1.02, c.h * 0.82, (150, 100, 70))
    c.rect(c.w * 0.7, c.h * 0.56, c.w * 1.02, c.h * 0.68, (250, 250, 245))
    c.rect(c.w * 0.72, c.h * 0.5, c.w * 0.84, c.h * 0.58, (255, 255, 255), radius=c.u * 0.02)
    c.rect(c.w * 0.78, c.h * 0.6, c.w * 1.02, c.h * 0.72, (90, 140, 210))
    if _night(scene):
        lx, ly = c.w * 0.55, c.h * 0.45
        c.rect(lx - c.u * 0.008, ly, lx + c.u * 0.008, c.h * 0.72, (120, 90, 60))
        c.halo(lx, ly, c.u * 0.25, (255, 210, 130), alpha=45)
        c.poly([(lx - c.u * 0.05, ly), (lx + c.u * 0.05, ly), (lx + c.u * 0.03, ly - c.u * 0.06),
                (lx - c.u * 0.03, ly - c.u * 0.06)], (255, 220, 140), glow=True)
    return Stage(ground=c.h * 0.93, figure_h=c.h * 0.3, horizon=c.h * 0.72,
                 spots=(0.22, 0.42, 0.6, 0.35))


SETTINGS: dict[str, Callable[[Canvas, Scene, random.Random], Stage]] = {
    "forest": _forest, "garden": _garden, "beach": _beach, "sea": _sea,
    "underwater": _underwater, "castle": _castle, "village": _village, "mountain": _mountain,
    "space": _space, "city": _city, "cave": _cave, "desert": _desert, "snow": _snow,
    "room": _room,
}


def _scatter(c: Canvas, rng: random.Random, y0: float, y1: float, count: int, scene: Scene,
             mushrooms: bool = False) -> None:
    """Foreground life: grass tufts, flowers (not on snow) and maybe mushrooms."""
    for k in range(count):
        x, y = rng.uniform(0.02, 0.98) * c.w, rng.uniform(y0, y1)
        depth = (y - y0) / max(1.0, y1 - y0)
        if scene.snowy or k % 3 == 0:
            props.grass_tuft(c, x, y, c.u * (0.02 + 0.015 * depth),
                             (200, 215, 230) if scene.snowy else (70, 140, 60))
        elif mushrooms and k % 3 == 1:
            props.mushroom(c, x, y, c.u * (0.03 + 0.025 * depth))
        else:
            props.flower(c, x, y, c.u * (0.008 + 0.006 * depth), rng.choice(props.FLOWER_COLOURS))


def paint_setting(c: Canvas, scene: Scene, rng: random.Random) -> Stage:
    """Draw sky and place; return where the figures go."""
    return SETTINGS[scene.setting](c, scene, rng)


def paint_weather(c: Canvas, scene: Scene, rng: random.Random) -> None:
    """Rain, snow, fog or a storm over the finished scene."""
    if scene.weather in ("rain", "storm"):
        n = 140 if scene.weather == "rain" else 220
        colour = c.paint((215, 225, 245), glow=True)
        length, slant = c.u * 0.04, c.u * 0.012
        for _ in range(n):
            x, y = rng.uniform(-0.05, 1.0) * c.w, rng.uniform(0, 1.0) * c.h
            c.draw.line((x, y, x - slant, y + length), fill=(*colour, 150),
                        width=max(1, round(c.u * 0.003)))
    if scene.weather == "storm":
        x, y, pts = c.w * rng.uniform(0.25, 0.75), 0.0, []
        for _ in range(6):
            pts.append((x, y))
            x, y = x + c.u * rng.uniform(-0.06, 0.06), y + c.h * 0.07
        c.draw.line(pts, fill=(*c.paint((255, 250, 200), glow=True), 230),
                    width=max(2, round(c.u * 0.008)), joint="curve")
        c.veil((255, 255, 255), 25)
    if scene.weather == "snow":
        for _ in range(160):
            r = c.u * rng.uniform(0.003, 0.008)
            c.circle(rng.uniform(0, c.w), rng.uniform(0, c.h), r, (255, 255, 255), glow=True,
                     line=False)
    if scene.weather == "fog":
        c.veil((230, 233, 238), 30)


def paint_mist(c: Canvas, scene: Scene) -> None:
    """Fog banks between the landscape and the figures: the scene fades, the story's
    characters stay readable in front of it."""
    if scene.weather != "fog":
        return
    for k in range(4):
        y = c.h * (0.4 + k * 0.12)
        c.veil((230, 233, 238), 60, y, y + c.h * 0.1)
    c.veil((230, 233, 238), 40)
