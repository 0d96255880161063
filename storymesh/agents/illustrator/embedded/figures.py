"""The embedded painter's cast: simple, recognisable, front-facing figures.

Each kind is drawn from a few shapes that say what it is (a mouse's big round ears and thin
tail, a fox's pointed ears and white-tipped brush, a rabbit's long ears) in the colours its
look names, then dressed with the accessories it names (scarf, hat, crown, cape, glasses, bow,
boots). Positions are given as the figure's bottom centre `(x, base)` and height `s`;
`_Pose.at(dx, dy)` maps figure units (dy upwards) to canvas pixels.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from storymesh.agents.illustrator.embedded.canvas import Canvas, Point, mix, shade
from storymesh.agents.illustrator.embedded.scene import Figure
from storymesh.agents.illustrator.styles import RGB

BLACK: RGB = (35, 30, 35)
WHITE: RGB = (250, 250, 248)
PINK: RGB = (240, 150, 165)
CHEEK: RGB = (245, 160, 160)
SKINS: tuple[RGB, ...] = ((255, 222, 190), (240, 196, 156), (205, 150, 108), (150, 100, 70))
HAIRS: tuple[RGB, ...] = ((110, 70, 40), (45, 35, 35), (235, 195, 95), (190, 85, 40))

# Figure height relative to the scene's standard figure height: some kinds are bigger.
SIZES: dict[str, float] = {"bear": 1.2, "lion": 1.1, "penguin": 0.9, "dragon": 1.45,
                           "robot": 1.1, "boy": 1.15, "girl": 1.15, "mouse": 0.85,
                           "bird": 0.55, "fish": 0.6, "owl": 0.9, "rabbit": 0.95,
                           "turtle": 0.8, "cloud": 1.0, "drop": 0.55, "clock": 1.0,
                           "vehicle": 1.05, "boat": 1.0, "snowman": 1.25, "grandma": 1.3,
                           "grandpa": 1.3, "person": 1.35, "thing": 0.9}
FLYERS = ("bird", "cloud", "drop")
SWIMMERS = ("fish",)


@dataclass(frozen=True, slots=True)
class Anchors:
    """Where accessories attach, in figure units (dy upwards from the base)."""

    head_y: float
    head_r: float
    neck_y: float
    eye_y: float
    eye_dx: float
    feet_dx: float = 0.09


ANCHORS: dict[str, Anchors] = {
    "mouse": Anchors(0.58, 0.2, 0.41, 0.59, 0.075),
    "cat": Anchors(0.6, 0.21, 0.42, 0.61, 0.085),
    "dog": Anchors(0.6, 0.22, 0.41, 0.64, 0.085),
    "fox": Anchors(0.6, 0.21, 0.42, 0.63, 0.085),
    "rabbit": Anchors(0.52, 0.19, 0.36, 0.54, 0.075),
    "bear": Anchors(0.6, 0.23, 0.4, 0.63, 0.09, 0.11),
    "owl": Anchors(0.6, 0.21, 0.36, 0.5, 0.1),
    "dragon": Anchors(0.6, 0.19, 0.43, 0.64, 0.08, 0.1),
    "boy": Anchors(0.64, 0.17, 0.48, 0.64, 0.065, 0.055),
    "girl": Anchors(0.64, 0.17, 0.48, 0.64, 0.065, 0.055),
    "robot": Anchors(0.66, 0.16, 0.5, 0.68, 0.07, 0.08),
    "lion": Anchors(0.6, 0.2, 0.42, 0.62, 0.08),
    "penguin": Anchors(0.62, 0.2, 0.42, 0.66, 0.075, 0.08),
    "turtle": Anchors(0.36, 0.13, 0.24, 0.38, 0.05, 0.2),
    "clock": Anchors(0.5, 0.3, 0.22, 0.58, 0.09, 0.12),
    "snowman": Anchors(0.74, 0.13, 0.6, 0.77, 0.05, 0.12),
    "grandma": Anchors(0.64, 0.17, 0.48, 0.64, 0.065, 0.055),
    "grandpa": Anchors(0.64, 0.17, 0.48, 0.64, 0.065, 0.055),
    "person": Anchors(0.64, 0.17, 0.48, 0.64, 0.065, 0.055),
    "thing": Anchors(0.42, 0.27, 0.15, 0.5, 0.09, 0.12),
}
GREY_HAIR: RGB = (218, 218, 224)


class _Pose:
    """A figure's position on the canvas: maps figure units to pixels."""

    def __init__(self, c: Canvas, x: float, base: float, s: float, facing: int = 1) -> None:
        self.c, self.x, self.base, self.s, self.facing = c, x, base, s, facing

    def at(self, dx: float, dy: float) -> Point:
        return (self.x + dx * self.s * self.facing, self.base - dy * self.s)

    def ell(self, dx: float, dy: float, rx: float, ry: float, rgb: RGB, **kw: bool) -> None:
        px, py = self.at(dx, dy)
        self.c.ellipse(px, py, rx * self.s, ry * self.s, rgb, **kw)

    def poly(self, pts: list[tuple[float, float]], rgb: RGB, **kw: bool) -> None:
        self.c.poly([self.at(dx, dy) for dx, dy in pts], rgb, **kw)

    def stroke(self, pts: list[tuple[float, float]], rgb: RGB, width: float) -> None:
        self.c.stroke([self.at(dx, dy) for dx, dy in pts], rgb, width * self.s)

    def rot_ell(self, dx: float, dy: float, rx: float, ry: float, angle: float, rgb: RGB,
                **kw: bool) -> None:
        """An ellipse tilted by `angle` degrees (ears, tails, wings)."""
        a = math.radians(angle) * self.facing
        pts = []
        for k in range(28):
            t = 2 * math.pi * k / 28
            ex, ey = rx * math.cos(t), ry * math.sin(t)
            pts.append((dx + (ex * math.cos(a) - ey * math.sin(a)) * self.facing,
                        dy + ex * math.sin(a) + ey * math.cos(a)))
        self.poly(pts, rgb, **kw)


def _stable_pick(name: str, options: tuple[RGB, ...]) -> RGB:
    """The same choice for the same name in every picture of a story (not seed-dependent)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return options[digest[0] % len(options)]


# -- faces ---------------------------------------------------------------------------------
def _eyes(p: _Pose, a: Anchors, r: float = 0.032, tall: float = 1.0) -> None:
    for side in (-1, 1):
        p.ell(side * a.eye_dx, a.eye_y, r, r * tall, BLACK, line=False)
        p.ell(side * a.eye_dx - r * 0.3, a.eye_y + r * 0.4 * tall, r * 0.38, r * 0.38, WHITE,
              line=False)


def _cheeks(p: _Pose, a: Anchors, dy: float = 0.06) -> None:
    for side in (-1, 1):
        p.ell(side * (a.eye_dx + 0.04), a.eye_y - dy, 0.035, 0.022, CHEEK, line=False)


def _smile(p: _Pose, dy: float, w: float = 0.05, rgb: RGB = BLACK, dx: float = 0.0) -> None:
    cx, cy = p.at(dx, dy)
    p.c.arc(cx, cy - w * p.s * 0.6, w * p.s, w * p.s * 0.7, 30, 150, rgb, 0.012 * p.s)


def _whiskers(p: _Pose, dy: float, rgb: RGB = (70, 70, 75)) -> None:
    for side in (-1, 1):
        for k in (-1, 0, 1):
            p.stroke([(side * 0.06, dy), (side * 0.24, dy + 0.02 * k + 0.01)], rgb, 0.006)


# -- animals -------------------------------------------------------------------------------
def _sitting_body(p: _Pose, f: Figure, rx: float = 0.2, ry: float = 0.23,
                  belly: float = 0.55) -> None:
    p.ell(0, ry, rx, ry, f.body)
    p.ell(0, ry * 0.85, rx * 0.62, ry * 0.7, mix(f.body, WHITE, belly), line=False)
    for side in (-1, 1):  # paws
        p.ell(side * rx * 0.75, ry * 1.1, 0.05, 0.07, f.body)


def _feet(p: _Pose, a: Anchors, rgb: RGB) -> None:
    for side in (-1, 1):
        p.ell(side * a.feet_dx, 0.02, 0.065, 0.035, rgb)


def draw_mouse(p: _Pose, f: Figure) -> None:
    a = ANCHORS["mouse"]
    p.stroke([(0.15, 0.08), (0.32, 0.03), (0.44, 0.1), (0.46, 0.25), (0.4, 0.33)],
             shade(PINK, 0.85), 0.022)
    _feet(p, a, PINK)
    _sitting_body(p, f)
    for side in (-1, 1):
        p.ell(side * 0.19, a.head_y + 0.16, 0.13, 0.13, f.body)
        p.ell(side * 0.19, a.head_y + 0.16, 0.085, 0.085, PINK, line=False)
    p.ell(0, a.head_y, a.head_r, a.head_r * 0.92, f.body)
    _eyes(p, a)
    _whiskers(p, a.head_y - 0.07)
    p.ell(0, a.head_y - 0.06, 0.035, 0.028, PINK)
    _smile(p, a.head_y - 0.1, 0.035)


def draw_cat(p: _Pose, f: Figure) -> None:
    a = ANCHORS["cat"]
    p.stroke([(0.16, 0.08), (0.32, 0.1), (0.38, 0.26), (0.33, 0.42)], f.body, 0.05)
    _feet(p, a, f.body)
    _sitting_body(p, f)
    for side in (-1, 1):
        p.poly([(side * 0.2, a.head_y + 0.05), (side * 0.17, a.head_y + 0.3),
                (side * 0.03, a.head_y + 0.17)], f.body)
        p.poly([(side * 0.16, a.head_y + 0.1), (side * 0.155, a.head_y + 0.23),
                (side * 0.07, a.head_y + 0.16)], PINK, line=False)
    p.ell(0, a.head_y, a.head_r, a.head_r * 0.88, f.body)
    for k in (-1, 0, 1):  # tabby forehead stripes
        p.stroke([(k * 0.05, a.head_y + 0.17), (k * 0.045, a.head_y + 0.11)],
                 shade(f.body, 0.7), 0.018)
    _eyes(p, a, 0.03, tall=1.35)
    _whiskers(p, a.head_y - 0.08)
    p.poly([(-0.03, a.head_y - 0.05), (0.03, a.head_y - 0.05), (0, a.head_y - 0.085)], PINK)
    _smile(p, a.head_y - 0.09, 0.03)
    _cheeks(p, a)


def draw_lion(p: _Pose, f: Figure) -> None:
    a = ANCHORS["lion"]
    mane = shade(f.body, 0.72)
    p.stroke([(0.16, 0.08), (0.34, 0.08), (0.4, 0.22)], f.body, 0.04)
    p.ell(0.41, 0.25, 0.04, 0.05, mane)
    _feet(p, a, f.body)
    _sitting_body(p, f)
    for k in range(12):  # the mane: a ring of tufts around the face
        t = k * math.tau / 12
        p.ell(math.cos(t) * 0.2, a.head_y + math.sin(t) * 0.19, 0.09, 0.09, mane, line=False)
    for side in (-1, 1):
        p.ell(side * 0.14, a.head_y + 0.14, 0.05, 0.05, f.body)
    p.ell(0, a.head_y, 0.19, 0.18, f.body)
    p.ell(0, a.head_y - 0.08, 0.09, 0.065, mix(f.body, WHITE, 0.55))
    _eyes(p, a)
    p.poly([(-0.035, a.head_y - 0.045), (0.035, a.head_y - 0.045), (0, a.head_y - 0.085)],
           (120, 70, 50))
    _smile(p, a.head_y - 0.1, 0.035)


def draw_penguin(p: _Pose, f: Figure) -> None:
    a = ANCHORS["penguin"]
    _feet(p, a, (245, 150, 40))
    for side in (-1, 1):  # flippers
        p.rot_ell(side * 0.2, 0.3, 0.05, 0.16, side * -20, f.body)
    p.ell(0, 0.36, 0.2, 0.34, f.body)
    p.ell(0, 0.3, 0.14, 0.25, WHITE, line=False)
    for side in (-1, 1):  # the white face mask
        p.ell(side * 0.07, a.eye_y - 0.01, 0.075, 0.07, WHITE, line=False)
    _eyes(p, a, 0.03)
    p.poly([(-0.04, a.eye_y - 0.06), (0.04, a.eye_y - 0.06), (0, a.eye_y - 0.13)],
           (245, 150, 40))
    _cheeks(p, a, 0.08)


def draw_dog(p: _Pose, f: Figure) -> None:
    a = ANCHORS["dog"]
    p.stroke([(0.16, 0.15), (0.28, 0.25), (0.33, 0.38)], f.body, 0.05)
    _feet(p, a, f.body)
    _sitting_body(p, f)
    p.ell(0, a.head_y, a.head_r, a.head_r * 0.92, f.body)
    p.ell(0.09, a.eye_y + 0.01, 0.06, 0.055, shade(f.body, 0.8), line=False)  # eye patch
    for side in (-1, 1):  # floppy ears hang over the sides of the head
        p.rot_ell(side * 0.2, a.head_y - 0.04, 0.065, 0.15, side * -12, shade(f.body, 0.65))
    p.ell(0, a.head_y - 0.09, 0.11, 0.08, mix(f.body, WHITE, 0.6))
    _eyes(p, a)
    p.ell(0.0, a.head_y - 0.15, 0.03, 0.035, (235, 100, 120))  # tongue
    p.ell(0, a.head_y - 0.055, 0.05, 0.035, BLACK)
    _smile(p, a.head_y - 0.1, 0.04)


def draw_fox(p: _Pose, f: Figure) -> None:
    a = ANCHORS["fox"]
    p.rot_ell(0.3, 0.2, 0.11, 0.24, -35, f.body)  # bushy brush
    p.rot_ell(0.42, 0.37, 0.06, 0.08, -35, WHITE)  # its white tip
    _feet(p, a, shade(f.body, 0.45))
    _sitting_body(p, f, belly=0.85)
    for side in (-1, 1):
        p.poly([(side * 0.21, a.head_y + 0.04), (side * 0.2, a.head_y + 0.34),
                (side * 0.04, a.head_y + 0.16)], f.body)
        p.poly([(side * 0.205, a.head_y + 0.24), (side * 0.2, a.head_y + 0.34),
                (side * 0.155, a.head_y + 0.27)], BLACK, line=False)
    p.ell(0, a.head_y, a.head_r, a.head_r * 0.9, f.body)
    p.poly([(-0.2, a.head_y - 0.01), (-0.08, a.head_y + 0.02), (0, a.head_y - 0.06),
            (0.08, a.head_y + 0.02), (0.2, a.head_y - 0.01), (0.1, a.head_y - 0.14),
            (0, a.head_y - 0.18), (-0.1, a.head_y - 0.14)], WHITE, line=False)
    _eyes(p, a)
    p.ell(0, a.head_y - 0.08, 0.035, 0.027, BLACK)
    _smile(p, a.head_y - 0.12, 0.03)


def draw_rabbit(p: _Pose, f: Figure) -> None:
    a = ANCHORS["rabbit"]
    _feet(p, a, mix(f.body, WHITE, 0.3))
    p.ell(0.2, 0.1, 0.065, 0.065, WHITE)  # cotton tail
    _sitting_body(p, f, rx=0.19, ry=0.2, belly=0.6)
    for side in (-1, 1):
        p.rot_ell(side * 0.08, a.head_y + 0.32, 0.06, 0.2, side * 8, f.body)
        p.rot_ell(side * 0.08, a.head_y + 0.31, 0.032, 0.15, side * 8, PINK, line=False)
    p.ell(0, a.head_y, a.head_r, a.head_r * 0.92, f.body)
    _eyes(p, a)
    _whiskers(p, a.head_y - 0.06)
    p.ell(0, a.head_y - 0.05, 0.03, 0.022, PINK)
    p.c.rect(*p.at(-0.025, a.head_y - 0.08), *p.at(0.025, a.head_y - 0.125), WHITE,
             radius=0.008 * p.s)
    _cheeks(p, a)


def draw_bear(p: _Pose, f: Figure) -> None:
    a = ANCHORS["bear"]
    _feet(p, a, shade(f.body, 0.85))
    _sitting_body(p, f, rx=0.25, ry=0.24, belly=0.45)
    for side in (-1, 1):
        p.ell(side * 0.17, a.head_y + 0.17, 0.075, 0.075, f.body)
        p.ell(side * 0.17, a.head_y + 0.17, 0.04, 0.04, mix(f.body, WHITE, 0.45), line=False)
    p.ell(0, a.head_y, a.head_r, a.head_r * 0.9, f.body)
    p.ell(0, a.head_y - 0.08, 0.1, 0.075, mix(f.body, WHITE, 0.5))
    _eyes(p, a, 0.028)
    p.ell(0, a.head_y - 0.055, 0.045, 0.03, BLACK)
    _smile(p, a.head_y - 0.1, 0.035)


def draw_owl(p: _Pose, f: Figure) -> None:
    a = ANCHORS["owl"]
    _feet(p, a, (235, 160, 50))
    for side in (-1, 1):  # ear tufts
        p.poly([(side * 0.2, 0.6), (side * 0.21, 0.75), (side * 0.07, 0.63)], f.body)
    p.ell(0, 0.34, 0.23, 0.34, f.body)
    p.ell(0, 0.22, 0.15, 0.19, mix(f.body, WHITE, 0.55), line=False)
    for row, dy in enumerate((0.3, 0.22, 0.14)):  # chest feathers
        for k in range(-1 + row % 2, 2):
            cx, cy = p.at(k * 0.06, dy)
            p.c.arc(cx, cy, 0.025 * p.s, 0.02 * p.s, 20, 160, shade(f.body, 0.7), 0.01 * p.s)
    for side in (-1, 1):
        p.rot_ell(side * 0.21, 0.28, 0.07, 0.17, side * 12, shade(f.body, 0.75))
        p.ell(side * a.eye_dx, a.eye_y, 0.095, 0.095, WHITE)
        p.ell(side * a.eye_dx, a.eye_y, 0.06, 0.06, (245, 190, 50), line=False)
    _eyes(p, a, 0.04)
    p.poly([(-0.035, a.eye_y - 0.02), (0.035, a.eye_y - 0.02), (0, a.eye_y - 0.1)],
           (235, 160, 50))


def draw_dragon(p: _Pose, f: Figure) -> None:
    a = ANCHORS["dragon"]
    wing = shade(f.body, 0.7)
    for side in (-1, 1):
        p.poly([(side * 0.1, 0.42), (side * 0.3, 0.72), (side * 0.48, 0.8), (side * 0.44, 0.56),
                (side * 0.37, 0.6), (side * 0.33, 0.45), (side * 0.26, 0.48),
                (side * 0.15, 0.3)], wing)
    p.stroke([(0.15, 0.07), (0.35, 0.04), (0.5, 0.09), (0.56, 0.2)], f.body, 0.07)
    p.poly([(0.52, 0.2), (0.62, 0.22), (0.57, 0.32)], shade(f.body, 0.6))
    _feet(p, a, shade(f.body, 0.8))
    _sitting_body(p, f, rx=0.22, ry=0.25, belly=0.0)
    p.ell(0, 0.21, 0.13, 0.18, (245, 215, 120), line=False)
    for k in range(4):  # belly scales
        cx, cy = p.at(0, 0.1 + k * 0.065)
        p.c.arc(cx, cy, 0.11 * p.s, 0.03 * p.s, 200, 340, (215, 175, 80), 0.01 * p.s)
    for side in (-1, 1):
        p.poly([(side * 0.1, a.head_y + 0.13), (side * 0.17, a.head_y + 0.3),
                (side * 0.04, a.head_y + 0.16)], (245, 235, 200))
    for dx in (-0.06, 0.0, 0.06):  # head spikes
        p.poly([(dx - 0.03, a.head_y + 0.16), (dx, a.head_y + 0.24),
                (dx + 0.03, a.head_y + 0.16)], shade(f.body, 0.6))
    p.ell(0, a.head_y, 0.2, a.head_r, f.body)
    p.ell(0, a.head_y - 0.09, 0.13, 0.075, mix(f.body, WHITE, 0.35))
    for side in (-1, 1):
        p.ell(side * 0.04, a.head_y - 0.07, 0.014, 0.01, BLACK, line=False)
    _eyes(p, a, 0.035)
    _smile(p, a.head_y - 0.11, 0.045)


def draw_bird(p: _Pose, f: Figure) -> None:
    """A bird in flight, side on."""
    p.poly([(-0.15, 0.0), (-0.34, 0.07), (-0.32, -0.06)], shade(f.body, 0.75))
    p.ell(0, 0.0, 0.19, 0.13, f.body)
    p.ell(0.03, -0.04, 0.11, 0.07, mix(f.body, WHITE, 0.5), line=False)
    p.poly([(-0.08, 0.02), (-0.2, 0.3), (0.1, 0.05)], shade(f.body, 0.8))
    p.ell(0.16, 0.08, 0.1, 0.1, f.body)
    p.poly([(0.24, 0.1), (0.34, 0.07), (0.24, 0.04)], (245, 170, 40))
    p.ell(0.19, 0.11, 0.02, 0.02, BLACK, line=False)


def draw_fish(p: _Pose, f: Figure) -> None:
    """A fish swimming, side on."""
    p.poly([(-0.2, 0.0), (-0.38, 0.13), (-0.38, -0.13)], shade(f.body, 0.8))
    p.poly([(-0.05, 0.12), (0.08, 0.2), (0.12, 0.1)], shade(f.body, 0.8))
    p.ell(0, 0.0, 0.25, 0.14, f.body)
    for dx in (-0.08, 0.06):
        p.ell(dx, 0.0, 0.025, 0.13, WHITE, line=False)
    p.ell(0.14, 0.03, 0.035, 0.035, WHITE)
    p.ell(0.15, 0.03, 0.02, 0.02, BLACK, line=False)
    _smile(p, -0.03, 0.03)


def draw_child(p: _Pose, f: Figure) -> None:
    a = ANCHORS[f.kind]
    skin = _stable_pick(f.name or f.kind, SKINS)
    hair = f.hair or _stable_pick(f.name[::-1] or f.kind, HAIRS)
    cloth = f.garment or f.body
    girl = f.kind in ("girl", "grandma")
    legs = skin if girl else (60, 80, 130)
    for side in (-1, 1):
        p.c.rect(*p.at(side * 0.055 - 0.03, 0.24), *p.at(side * 0.055 + 0.03, 0.03), legs)
    _feet(p, a, (90, 60, 45))
    if girl:
        p.ell(0, a.head_y - 0.02, 0.21, 0.24, hair)  # long hair falls behind the shoulders
    if girl:
        p.poly([(-0.1, 0.48), (0.1, 0.48), (0.21, 0.2), (-0.21, 0.2)], cloth)
    else:
        p.c.rect(*p.at(-0.12, 0.48), *p.at(0.12, 0.22), cloth, radius=0.05 * p.s)
    for side in (-1, 1):  # arms over the clothes, so a dress does not swallow them
        p.stroke([(side * 0.15, 0.38), (side * 0.2, 0.28)], skin, 0.045)
        p.ell(side * 0.205, 0.27, 0.03, 0.03, skin)
        p.stroke([(side * 0.1, 0.45), (side * 0.155, 0.37)], cloth, 0.065)
    p.ell(0, a.head_y, a.head_r, a.head_r, skin)
    p.poly([(-0.175, a.head_y), (-0.15, a.head_y + 0.12), (0, a.head_y + 0.185),
            (0.15, a.head_y + 0.12), (0.175, a.head_y), (0.1, a.head_y + 0.09),
            (-0.05, a.head_y + 0.07)], hair)
    _eyes(p, a, 0.025)
    _cheeks(p, a, 0.05)
    _smile(p, a.head_y - 0.07, 0.04)


def draw_robot(p: _Pose, f: Figure) -> None:
    a = ANCHORS["robot"]
    dark = shade(f.body, 0.7)
    for side in (-1, 1):
        p.c.rect(*p.at(side * 0.08 - 0.035, 0.25), *p.at(side * 0.08 + 0.035, 0.03), dark)
        p.stroke([(side * 0.15, 0.44), (side * 0.24, 0.33), (side * 0.25, 0.25)], dark, 0.035)
        p.ell(side * 0.25, 0.24, 0.04, 0.04, dark)
    _feet(p, a, dark)
    p.c.rect(*p.at(-0.16, 0.5), *p.at(0.16, 0.22), f.body, radius=0.03 * p.s)
    p.c.rect(*p.at(-0.09, 0.44), *p.at(0.09, 0.3), shade(f.body, 0.85), radius=0.02 * p.s)
    for k, colour in enumerate(((230, 70, 70), (250, 210, 60), (80, 200, 120))):
        p.ell(-0.05 + k * 0.05, 0.37, 0.02, 0.02, colour, glow=True)
    p.stroke([(0, a.head_y + 0.15), (0, a.head_y + 0.24)], dark, 0.015)
    p.ell(0, a.head_y + 0.25, 0.03, 0.03, (240, 70, 70), glow=True)
    p.c.rect(*p.at(-0.17, a.head_y + 0.15), *p.at(0.17, a.head_y - 0.14), f.body,
             radius=0.05 * p.s)
    for side in (-1, 1):
        p.ell(side * a.eye_dx, a.eye_y, 0.045, 0.045, (90, 230, 250), glow=True)
        p.ell(side * a.eye_dx, a.eye_y, 0.02, 0.02, (20, 60, 90), glow=True, line=False)
    p.c.rect(*p.at(-0.07, a.head_y - 0.06), *p.at(0.07, a.head_y - 0.1), dark)


def draw_elder(p: _Pose, f: Figure) -> None:
    """A grandparent: a grown-up with grey hair and round glasses (and a moustache)."""
    draw_child(p, f if f.hair else replace(f, hair=GREY_HAIR))
    a = ANCHORS[f.kind]
    if f.kind == "grandpa":
        p.poly([(-0.07, a.head_y - 0.045), (0.07, a.head_y - 0.045), (0.05, a.head_y - 0.075),
                (0, a.head_y - 0.06), (-0.05, a.head_y - 0.075)], f.hair or GREY_HAIR)
    if "glasses" not in f.accessories:
        _glasses(p, a, (60, 50, 50))


def draw_turtle(p: _Pose, f: Figure) -> None:
    """A tortoise, front on: a high domed shell, a head poking out, stubby legs."""
    a = ANCHORS["turtle"]
    skin = mix(f.body, (200, 190, 120), 0.45)
    for side in (-1, 1):
        p.ell(side * 0.26, 0.06, 0.08, 0.07, skin)
    p.poly([(-0.42, 0.1), (-0.38, 0.3), (-0.24, 0.46), (0, 0.52), (0.24, 0.46), (0.38, 0.3),
            (0.42, 0.1)], f.body)
    p.ell(0, 0.1, 0.44, 0.05, shade(f.body, 0.7))
    for dx, dy in ((0, 0.36), (-0.2, 0.26), (0.2, 0.26), (-0.1, 0.17), (0.1, 0.17)):
        p.ell(dx, dy, 0.08, 0.065, shade(f.body, 0.8))  # the patchwork plates
    p.ell(0, a.head_y, a.head_r, a.head_r * 1.05, skin)
    _eyes(p, a, 0.026)
    _smile(p, a.head_y - 0.06, 0.035)
    _cheeks(p, a, 0.05)


def draw_cloud(p: _Pose, f: Figure) -> None:
    """A puffy cloud with a face, floating."""
    for dx, dy, rx, ry in ((-0.26, -0.02, 0.17, 0.14), (0.26, -0.02, 0.17, 0.14),
                           (-0.11, 0.1, 0.2, 0.18), (0.12, 0.12, 0.21, 0.19),
                           (0, -0.04, 0.3, 0.14)):
        p.ell(dx, dy, rx, ry, f.body)
    p.ell(0, -0.02, 0.33, 0.12, f.body, line=False)
    a = Anchors(0.0, 0.2, 0.0, 0.04, 0.08)
    _eyes(p, a, 0.028)
    _cheeks(p, a, 0.05)
    _smile(p, -0.02, 0.04)


def draw_drop(p: _Pose, f: Figure) -> None:
    """A drop (or a seed): a teardrop with a face."""
    pts = [(0.0, 0.32)]
    for k in range(21):
        t = math.pi * (1.15 - 1.3 * k / 20)
        pts.append((0.17 * math.cos(t), -0.05 + 0.17 * math.sin(t)))
    p.poly(pts, f.body)
    p.ell(-0.07, 0.04, 0.03, 0.06, mix(f.body, WHITE, 0.6), line=False)
    a = Anchors(0.0, 0.15, 0.0, -0.03, 0.06)
    _eyes(p, a, 0.024)
    _smile(p, -0.09, 0.035)


def draw_clock(p: _Pose, f: Figure) -> None:
    """An alarm clock on little legs: two bells, a face with hands, and eyes."""
    a = ANCHORS["clock"]
    for side in (-1, 1):
        p.stroke([(side * 0.14, 0.2), (side * 0.2, 0.02)], BLACK, 0.03)
        p.ell(side * 0.19, a.head_y + 0.27, 0.1, 0.07, shade(f.body, 0.9))
    p.stroke([(0, a.head_y + 0.3), (0, a.head_y + 0.35)], BLACK, 0.025)
    p.ell(0, a.head_y, a.head_r, a.head_r, f.body)
    p.ell(0, a.head_y, a.head_r * 0.8, a.head_r * 0.8, (252, 248, 235))
    for k in range(12):  # the hour marks
        t = k * math.tau / 12
        r0, r1 = a.head_r * 0.68, a.head_r * 0.76
        p.stroke([(math.cos(t) * r0, a.head_y + math.sin(t) * r0),
                  (math.cos(t) * r1, a.head_y + math.sin(t) * r1)], BLACK, 0.012)
    p.stroke([(0, a.head_y - 0.02), (0.0, a.head_y - 0.16)], BLACK, 0.018)
    p.stroke([(0, a.head_y - 0.02), (0.11, a.head_y - 0.07)], BLACK, 0.018)
    _eyes(p, a, 0.028)
    _cheeks(p, a, 0.07)


def draw_vehicle(p: _Pose, f: Figure) -> None:
    """A little engine (a train, a tractor, a car...) with eyes in its window."""
    dark = shade(f.body, 0.6)
    p.c.rect(*p.at(-0.42, 0.42), *p.at(0.1, 0.12), f.body, radius=0.03 * p.s)
    p.c.rect(*p.at(0.02, 0.62), *p.at(0.42, 0.12), f.body, radius=0.04 * p.s)  # the cab
    p.c.rect(*p.at(0.08, 0.56), *p.at(0.36, 0.38), (200, 230, 250), radius=0.03 * p.s)
    p.c.rect(*p.at(-0.34, 0.6), *p.at(-0.22, 0.42), dark)  # the funnel
    p.c.rect(*p.at(0.0, 0.66), *p.at(0.46, 0.61), dark, radius=0.02 * p.s)  # the roof
    for dx, r in ((-0.28, 0.12), (0.26, 0.12)):
        p.ell(dx, 0.12, r, r, (50, 50, 60))
        p.ell(dx, 0.12, r * 0.45, r * 0.45, (200, 200, 210))
    a = Anchors(0.47, 0.1, 0.3, 0.47, 0.06)
    for side in (-1, 1):
        p.ell(0.22 + side * a.eye_dx, a.eye_y, 0.03, 0.035, BLACK, line=False)
        p.ell(0.22 + side * a.eye_dx - 0.01, a.eye_y + 0.015, 0.011, 0.011, WHITE, line=False)
    _smile(p, 0.42, 0.05, dx=0.22)


def draw_boat(p: _Pose, f: Figure) -> None:
    """A little boat with a cabin and a face on its bow."""
    p.poly([(-0.45, 0.3), (0.45, 0.3), (0.34, 0.05), (-0.32, 0.05)], f.body)
    p.c.rect(*p.at(-0.2, 0.55), *p.at(0.15, 0.3), (245, 240, 225), radius=0.03 * p.s)
    p.c.rect(*p.at(-0.16, 0.6), *p.at(-0.06, 0.55), shade(f.body, 0.7))  # the funnel
    a = Anchors(0.2, 0.1, 0.1, 0.2, 0.06)
    for side in (-1, 1):
        p.ell(0.26 + side * a.eye_dx, a.eye_y, 0.028, 0.03, BLACK, line=False)
    _smile(p, 0.17, 0.045, dx=0.26)


def draw_snowman(p: _Pose, f: Figure) -> None:
    a = ANCHORS["snowman"]
    p.ell(0, 0.2, 0.22, 0.2, f.body)
    p.ell(0, 0.5, 0.16, 0.15, f.body)
    for side in (-1, 1):
        p.stroke([(side * 0.14, 0.52), (side * 0.34, 0.66)], (110, 75, 45), 0.02)
    p.ell(0, a.head_y, a.head_r, a.head_r, f.body)
    for dy in (0.44, 0.52):
        p.ell(0, dy, 0.02, 0.02, BLACK, line=False)
    _eyes(p, a, 0.022)
    p.poly([(0, a.head_y - 0.02), (0.14, a.head_y - 0.04), (0, a.head_y - 0.055)],
           (240, 130, 40))
    _smile(p, a.head_y - 0.07, 0.035)


def draw_thing(p: _Pose, f: Figure) -> None:
    """Anything else (a kettle, a pumpkin, a windmill): a round body with a face."""
    a = ANCHORS["thing"]
    for side in (-1, 1):
        p.stroke([(side * 0.1, 0.18), (side * 0.12, 0.03)], BLACK, 0.03)
        p.stroke([(side * 0.24, 0.42), (side * 0.36, 0.32)], BLACK, 0.025)
    _feet(p, a, BLACK)
    p.ell(0, a.head_y, a.head_r, a.head_r * 0.95, f.body)
    p.ell(-0.08, a.head_y + 0.12, 0.07, 0.05, mix(f.body, WHITE, 0.5), line=False)
    p.ell(0, a.head_y + a.head_r * 0.98, 0.05, 0.035, shade(f.body, 0.6))  # a knob on top
    _eyes(p, a, 0.03)
    _cheeks(p, a, 0.07)
    _smile(p, a.head_y - 0.08, 0.05)


DRAW: dict[str, Callable[[_Pose, Figure], None]] = {
    "mouse": draw_mouse, "cat": draw_cat, "dog": draw_dog, "fox": draw_fox,
    "rabbit": draw_rabbit, "bear": draw_bear, "owl": draw_owl, "dragon": draw_dragon,
    "bird": draw_bird, "fish": draw_fish, "boy": draw_child, "girl": draw_child,
    "robot": draw_robot, "lion": draw_lion, "penguin": draw_penguin, "turtle": draw_turtle,
    "cloud": draw_cloud, "drop": draw_drop, "clock": draw_clock, "vehicle": draw_vehicle,
    "boat": draw_boat, "snowman": draw_snowman, "grandma": draw_elder, "grandpa": draw_elder,
    "person": draw_child, "thing": draw_thing,
}


# -- accessories ---------------------------------------------------------------------------
def _cape(p: _Pose, a: Anchors, rgb: RGB) -> None:
    w = a.head_r
    p.poly([(-w * 0.6, a.neck_y), (w * 0.6, a.neck_y), (w * 1.35, 0.02), (-w * 1.35, 0.02)],
           rgb)


def _scarf(p: _Pose, a: Anchors, rgb: RGB) -> None:
    w = a.head_r * 0.85
    p.c.rect(*p.at(-w, a.neck_y + 0.04), *p.at(w, a.neck_y - 0.035), rgb, radius=0.03 * p.s)
    p.poly([(w * 0.2, a.neck_y), (w * 0.65, a.neck_y - 0.02), (w * 0.75, a.neck_y - 0.2),
            (w * 0.35, a.neck_y - 0.19)], rgb)
    p.stroke([(w * 0.38, a.neck_y - 0.1), (w * 0.7, a.neck_y - 0.1)], shade(rgb, 0.75), 0.015)


def _hat(p: _Pose, a: Anchors, rgb: RGB) -> None:
    top = a.head_y + a.head_r * 0.8
    p.c.rect(*p.at(-0.12, top + 0.17), *p.at(0.12, top), rgb, radius=0.02 * p.s)
    p.c.rect(*p.at(-0.12, top + 0.06), *p.at(0.12, top + 0.02), shade(rgb, 0.6))
    p.ell(0, top, 0.22, 0.035, rgb)


def _wizard_hat(p: _Pose, a: Anchors, rgb: RGB) -> None:
    top = a.head_y + a.head_r * 0.75
    p.poly([(-0.16, top), (0.16, top), (0.05, top + 0.38)], rgb)
    p.ell(0, top, 0.24, 0.04, rgb)
    p.ell(-0.01, top + 0.14, 0.03, 0.03, (250, 215, 60), glow=True)


def _crown(p: _Pose, a: Anchors, rgb: RGB) -> None:
    top = a.head_y + a.head_r * 0.8
    p.poly([(-0.12, top), (0.12, top), (0.13, top + 0.13), (0.065, top + 0.07),
            (0, top + 0.15), (-0.065, top + 0.07), (-0.13, top + 0.13)], rgb)
    p.ell(0, top + 0.04, 0.02, 0.02, (210, 40, 60), glow=True)


def _glasses(p: _Pose, a: Anchors, rgb: RGB) -> None:
    r = a.eye_dx * 0.65
    for side in (-1, 1):
        cx, cy = p.at(side * a.eye_dx, a.eye_y)
        p.c.arc(cx, cy, r * p.s, r * p.s, 0, 360, rgb, 0.012 * p.s)
    p.stroke([(-a.eye_dx + r, a.eye_y), (a.eye_dx - r, a.eye_y)], rgb, 0.012)


def _bow(p: _Pose, a: Anchors, rgb: RGB) -> None:
    cx, cy = a.head_r * 0.7, a.head_y + a.head_r * 0.75
    p.poly([(cx, cy), (cx - 0.08, cy + 0.05), (cx - 0.08, cy - 0.05)], rgb)
    p.poly([(cx, cy), (cx + 0.08, cy + 0.05), (cx + 0.08, cy - 0.05)], rgb)
    p.ell(cx, cy, 0.025, 0.025, shade(rgb, 0.8))


def _boots(p: _Pose, a: Anchors, rgb: RGB) -> None:
    _feet(p, a, rgb)


WEAR: dict[str, Callable[[_Pose, Anchors, RGB], None]] = {
    "scarf": _scarf, "hat": _hat, "wizard_hat": _wizard_hat, "crown": _crown,
    "glasses": _glasses, "bow": _bow, "boots": _boots,
}


def draw_figure(c: Canvas, f: Figure, x: float, base: float, s: float,
                facing: int = 1) -> None:
    """Draw one figure standing on `base` (its bottom centre at x), `s` pixels tall."""
    p = _Pose(c, x, base, s, facing)
    anchors = ANCHORS.get(f.kind)
    if anchors and "cape" in f.accessories:
        _cape(p, anchors, f.accessories["cape"])
    DRAW[f.kind](p, f)
    if anchors is None:  # fliers and swimmers wear nothing
        return
    for name in ("boots", "scarf", "glasses", "bow", "crown", "hat", "wizard_hat"):
        if name in f.accessories:
            WEAR[name](p, anchors, f.accessories[name])
