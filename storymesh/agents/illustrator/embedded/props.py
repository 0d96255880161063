"""The embedded painter's things: trees, houses, a castle, a boat, clouds, flowers...

Each function draws one object standing on `(x, base)` with a size in canvas pixels, so the
setting code (landscape.py) can place them in layers, small and pale far away, big and
bright close up. `night` lights windows and lanterns: those glow instead of being dimmed.
"""

from __future__ import annotations

import math
import random

from storymesh.agents.illustrator.embedded.canvas import Canvas, mix, shade
from storymesh.agents.illustrator.styles import RGB

WHITE: RGB = (250, 250, 248)
TRUNK: RGB = (120, 80, 50)
WINDOW_DAY: RGB = (170, 210, 235)
WINDOW_LIT: RGB = (255, 215, 110)
FLOWER_COLOURS: tuple[RGB, ...] = ((240, 80, 90), (250, 210, 60), (250, 250, 245),
                                   (190, 110, 230), (255, 150, 190), (90, 150, 240))


def pine(c: Canvas, x: float, base: float, h: float, rgb: RGB, snowy: bool = False) -> None:
    c.rect(x - h * 0.04, base - h * 0.2, x + h * 0.04, base, shade(TRUNK, 0.9), line=False)
    for k in range(3):
        top = base - h * (0.55 + k * 0.2)
        bottom = base - h * (0.12 + k * 0.22)
        half = h * (0.3 - k * 0.07)
        c.poly([(x - half, bottom), (x + half, bottom), (x, top - h * 0.1)],
               shade(rgb, 0.92 + k * 0.06))
        if snowy:
            c.poly([(x - half * 0.45, top + h * 0.08), (x + half * 0.45, top + h * 0.08),
                    (x, top - h * 0.1)], WHITE, line=False)


def round_tree(c: Canvas, x: float, base: float, h: float, rgb: RGB,
               snowy: bool = False, fruit: RGB | None = None) -> None:
    c.poly([(x - h * 0.06, base), (x + h * 0.06, base), (x + h * 0.035, base - h * 0.55),
            (x - h * 0.035, base - h * 0.55)], TRUNK)
    r = h * 0.25
    for dx, dy, k in ((-0.5, 0.0, 0.9), (0.5, 0.0, 0.9), (0.0, -0.45, 1.05), (0.0, 0.1, 1.0)):
        c.circle(x + dx * r, base - h * 0.62 + dy * r, r * k, shade(rgb, 0.9 + 0.1 * k))
    if snowy:
        c.ellipse(x, base - h * 0.62 - r * 1.0, r * 0.7, r * 0.3, WHITE, line=False)
    if fruit:
        for dx, dy in ((-0.5, -0.1), (0.3, -0.5), (0.45, 0.25), (-0.15, 0.35)):
            c.circle(x + dx * r, base - h * 0.62 + dy * r, r * 0.1, fruit)


def hills(c: Canvas, y: float, amplitude: float, rgb: RGB, rng: random.Random,
          waves: float = 1.5) -> list[tuple[float, float]]:
    """A rolling ridge from edge to edge, filled down to the bottom; returns its top line."""
    phase, phase2 = rng.uniform(0, math.tau), rng.uniform(0, math.tau)
    top = []
    for k in range(41):
        t = k / 40
        wave = math.sin(t * math.tau * waves / 2 + phase) + 0.4 * math.sin(t * 9 + phase2)
        top.append((t * c.w, y - amplitude * wave))
    c.poly([*top, (c.w, c.h + 10), (0, c.h + 10)], rgb, line=False)
    return top


def cloud(c: Canvas, x: float, y: float, size: float, rgb: RGB = WHITE) -> None:
    for dx, dy, r in ((-0.5, 0.1, 0.35), (0.5, 0.1, 0.35), (-0.15, -0.12, 0.45),
                      (0.25, -0.05, 0.4), (0.0, 0.15, 0.4)):
        c.circle(x + dx * size, y + dy * size, r * size, rgb, line=False)


def house(c: Canvas, x: float, base: float, w: float, wall: RGB, roof: RGB,
          night: bool) -> None:
    h = w * 0.75
    c.rect(x + w * 0.22, base - h - w * 0.4, x + w * 0.34, base - h - w * 0.05, (150, 80, 60))
    c.rect(x - w / 2, base - h, x + w / 2, base, wall)
    c.poly([(x - w * 0.62, base - h + 2), (x + w * 0.62, base - h + 2),
            (x, base - h - w * 0.45)], roof)
    c.rect(x - w * 0.1, base - h * 0.45, x + w * 0.1, base, (130, 80, 50), radius=w * 0.04)
    glass = WINDOW_LIT if night else WINDOW_DAY
    for side in (-1, 1):
        wx = x + side * w * 0.28
        c.rect(wx - w * 0.1, base - h * 0.75, wx + w * 0.1, base - h * 0.48, glass, glow=night)
        c.stroke([(wx, base - h * 0.75), (wx, base - h * 0.48)], shade(wall, 0.6), w * 0.015)
        if night:
            c.halo(wx, base - h * 0.62, w * 0.22, WINDOW_LIT, alpha=26)


def castle(c: Canvas, x: float, base: float, size: float, night: bool,
           stone: RGB = (200, 195, 205), roof: RGB = (70, 110, 200)) -> None:
    """A fairy-tale castle `size` pixels tall."""
    s = size
    for dx, tw, th in ((-0.42, 0.16, 0.72), (0.42, 0.16, 0.72), (-0.18, 0.14, 0.88),
                       (0.18, 0.14, 0.88)):
        tx = x + dx * s
        c.rect(tx - tw * s / 2, base - th * s, tx + tw * s / 2, base, shade(stone, 0.95))
        c.poly([(tx - tw * s * 0.65, base - th * s), (tx + tw * s * 0.65, base - th * s),
                (tx, base - (th + 0.26) * s)], roof)
        c.stroke([(tx, base - (th + 0.26) * s), (tx, base - (th + 0.36) * s)], (90, 80, 80),
                 s * 0.01)
        c.poly([(tx, base - (th + 0.36) * s), (tx + 0.09 * s, base - (th + 0.33) * s),
                (tx, base - (th + 0.3) * s)], (220, 60, 60))
        c.rect(tx - 0.025 * s, base - (th - 0.12) * s, tx + 0.025 * s, base - (th - 0.2) * s,
               WINDOW_LIT if night else (60, 60, 80), glow=night, radius=0.02 * s)
    c.rect(x - 0.36 * s, base - 0.5 * s, x + 0.36 * s, base, stone)
    for k in range(9):  # battlements
        bx = x - 0.36 * s + k * 0.09 * s
        c.rect(bx, base - 0.56 * s, bx + 0.045 * s, base - 0.5 * s, stone)
    c.ellipse(x, base - 0.22 * s, 0.1 * s, 0.1 * s, (90, 60, 45))
    c.rect(x - 0.1 * s, base - 0.22 * s, x + 0.1 * s, base, (90, 60, 45))


def mountain(c: Canvas, x: float, base: float, w: float, h: float, rgb: RGB,
             snow: bool = True) -> None:
    c.poly([(x - w / 2, base), (x, base - h), (x + w / 2, base)], rgb, line=False)
    c.poly([(x, base - h), (x + w / 2, base), (x + w * 0.1, base)], shade(rgb, 0.88),
           line=False)
    if snow:
        c.poly([(x - w * 0.14, base - h * 0.72), (x, base - h), (x + w * 0.14, base - h * 0.72),
                (x + w * 0.05, base - h * 0.66), (x - w * 0.03, base - h * 0.74),
                (x - w * 0.08, base - h * 0.67)], WHITE, line=False)


def flower(c: Canvas, x: float, y: float, r: float, rgb: RGB) -> None:
    c.stroke([(x, y), (x, y + r * 3)], (70, 140, 60), max(1.0, r * 0.35))
    for k in range(5):
        a = k * math.tau / 5
        c.circle(x + math.cos(a) * r, y + math.sin(a) * r, r * 0.75, rgb, line=False)
    c.circle(x, y, r * 0.55, (250, 200, 60), line=False)


def grass_tuft(c: Canvas, x: float, y: float, h: float, rgb: RGB) -> None:
    for dx in (-0.4, 0.0, 0.4):
        c.stroke([(x + dx * h * 0.3, y), (x + dx * h, y - h * (1.0 - abs(dx) * 0.5))], rgb,
                 max(1.0, h * 0.12))


def mushroom(c: Canvas, x: float, base: float, h: float) -> None:
    c.rect(x - h * 0.15, base - h * 0.6, x + h * 0.15, base, (245, 235, 215), radius=h * 0.1)
    c.poly([(x - h * 0.5, base - h * 0.55), (x + h * 0.5, base - h * 0.55),
            (x + h * 0.35, base - h * 0.85), (x, base - h), (x - h * 0.35, base - h * 0.85)],
           (215, 50, 45))
    for dx, dy in ((-0.2, 0.7), (0.15, 0.82), (0.3, 0.63)):
        c.circle(x + dx * h, base - dy * h, h * 0.06, WHITE, line=False)


def boat(c: Canvas, x: float, deck: float, w: float, sail: bool = True) -> None:
    """Mast and sail (the hull is `hull()`, drawn after whoever sits in the boat)."""
    if sail:
        c.stroke([(x, deck), (x, deck - w * 0.9)], (110, 75, 45), w * 0.02)
        c.poly([(x + w * 0.02, deck - w * 0.88), (x + w * 0.02, deck - w * 0.2),
                (x + w * 0.42, deck - w * 0.2)], (250, 245, 230))
        c.poly([(x, deck - w * 0.9), (x + w * 0.12, deck - w * 0.86), (x, deck - w * 0.82)],
               (220, 60, 60))


def hull(c: Canvas, x: float, deck: float, w: float, rgb: RGB = (170, 90, 50)) -> None:
    c.poly([(x - w / 2, deck - w * 0.05), (x + w / 2, deck - w * 0.05),
            (x + w * 0.38, deck + w * 0.2), (x - w * 0.38, deck + w * 0.2)], rgb)
    c.stroke([(x - w * 0.47, deck + w * 0.03), (x + w * 0.47, deck + w * 0.03)],
             shade(rgb, 0.75), w * 0.02)


def waves(c: Canvas, rng: random.Random, y0: float, y1: float, count: int,
          rgb: RGB = WHITE) -> None:
    for _ in range(count):
        y = rng.uniform(y0, y1)
        depth = (y - y0) / max(1.0, y1 - y0)
        r = c.u * (0.015 + 0.03 * depth)
        x = rng.uniform(0, c.w)
        c.arc(x, y, r, r * 0.5, 200, 340, rgb, max(1.0, c.u * 0.004 * (0.5 + depth)))


def palm(c: Canvas, x: float, base: float, h: float) -> None:
    pts = [(x + h * 0.12 * math.sin(t / 8 * 1.6), base - h * t / 8) for t in range(9)]
    c.stroke(pts, (150, 105, 60), h * 0.06)
    tx, ty = pts[-1]
    for k in range(7):  # fronds fan out from the crown and droop at the tips
        a = math.pi * (0.02 + k * 0.16)
        length = h * 0.32
        upper, lower = [], []
        for step in range(9):
            t = step / 8
            x = tx + math.cos(a) * length * t
            y = ty - math.sin(a) * length * t * 0.6 + length * 0.55 * t * t
            half = length * 0.07 * math.sin(math.pi * t)
            upper.append((x, y - half))
            lower.append((x, y + half))
        c.poly(upper + lower[::-1], (60, 150, 70) if k % 2 else (75, 170, 80))
    c.circle(tx, ty, h * 0.035, (120, 80, 40))


def cactus(c: Canvas, x: float, base: float, h: float, rgb: RGB = (80, 150, 80)) -> None:
    w = h * 0.16
    c.rect(x - w / 2, base - h, x + w / 2, base, rgb, radius=w / 2)
    c.rect(x - w * 2.1, base - h * 0.75, x - w * 1.2, base - h * 0.4, rgb, radius=w / 2)
    c.rect(x - w * 2.1, base - h * 0.5, x, base - h * 0.4, rgb, radius=w / 4)
    c.rect(x + w * 1.2, base - h * 0.85, x + w * 2.1, base - h * 0.55, rgb, radius=w / 2)
    c.rect(x, base - h * 0.65, x + w * 2.1, base - h * 0.55, rgb, radius=w / 4)


def snowman(c: Canvas, x: float, base: float, h: float) -> None:
    c.circle(x, base - h * 0.22, h * 0.22, WHITE)
    c.circle(x, base - h * 0.58, h * 0.16, WHITE)
    c.circle(x, base - h * 0.84, h * 0.12, WHITE)
    c.poly([(x, base - h * 0.84), (x + h * 0.15, base - h * 0.82), (x, base - h * 0.8)],
           (240, 130, 40))
    for side in (-1, 1):
        c.circle(x + side * h * 0.045, base - h * 0.88, h * 0.015, (30, 30, 30), line=False)
        c.stroke([(x + side * h * 0.14, base - h * 0.6), (x + side * h * 0.35, base - h * 0.75)],
                 (110, 75, 45), h * 0.02)
    c.rect(x - h * 0.13, base - h * 0.67, x + h * 0.13, base - h * 0.62, (205, 45, 45))


def balloon(c: Canvas, x: float, y: float, r: float, rgb: RGB) -> None:
    c.stroke([(x, y + r), (x + r * 0.3, y + r * 2.5), (x - r * 0.1, y + r * 4)],
             (90, 90, 90), max(1.0, r * 0.05))
    c.ellipse(x, y, r * 0.85, r, rgb)
    c.ellipse(x - r * 0.3, y - r * 0.4, r * 0.18, r * 0.28, mix(rgb, WHITE, 0.6), line=False)


def kite(c: Canvas, x: float, y: float, r: float) -> None:
    c.stroke([(x, y + r), (x - r * 0.5, y + r * 2), (x + r * 0.2, y + r * 3),
              (x - r * 0.3, y + r * 4)], (90, 90, 90), max(1.0, r * 0.04))
    c.poly([(x, y - r), (x + r * 0.7, y), (x, y + r), (x - r * 0.7, y)], (240, 80, 80))
    c.poly([(x, y - r), (x + r * 0.7, y), (x, y)], (250, 210, 60), line=False)
    c.poly([(x, y + r), (x - r * 0.7, y), (x, y)], (250, 210, 60), line=False)


def lantern(c: Canvas, x: float, base: float, h: float) -> None:
    c.halo(x, base - h * 0.45, h * 1.6, (255, 200, 100), alpha=40)
    c.rect(x - h * 0.22, base - h * 0.8, x + h * 0.22, base, (60, 50, 45), radius=h * 0.05)
    c.rect(x - h * 0.16, base - h * 0.72, x + h * 0.16, base - h * 0.08, (255, 215, 110),
           glow=True)
    c.arc(x, base - h * 0.85, h * 0.14, h * 0.15, 180, 360, (60, 50, 45), h * 0.05)


def campfire(c: Canvas, x: float, base: float, h: float) -> None:
    c.halo(x, base - h * 0.4, h * 2.2, (255, 160, 60), alpha=45)
    for side in (-1, 1):
        c.stroke([(x - side * h * 0.5, base), (x + side * h * 0.4, base - h * 0.2)],
                 (110, 70, 40), h * 0.12)
    c.poly([(x - h * 0.35, base - h * 0.1), (x - h * 0.2, base - h * 0.7), (x, base - h * 0.4),
            (x + h * 0.1, base - h * 1.0), (x + h * 0.35, base - h * 0.1)], (245, 130, 40),
           glow=True)
    c.poly([(x - h * 0.18, base - h * 0.1), (x, base - h * 0.55), (x + h * 0.18, base - h * 0.1)],
           (255, 220, 90), glow=True, line=False)


def tent(c: Canvas, x: float, base: float, w: float, rgb: RGB = (230, 120, 60)) -> None:
    c.poly([(x - w / 2, base), (x, base - w * 0.7), (x + w / 2, base)], rgb)
    c.poly([(x - w * 0.12, base), (x, base - w * 0.42), (x + w * 0.12, base)], shade(rgb, 0.5))


def treasure(c: Canvas, x: float, base: float, w: float) -> None:
    c.halo(x, base - w * 0.4, w * 0.9, (255, 220, 100), alpha=40)
    c.rect(x - w / 2, base - w * 0.45, x + w / 2, base, (150, 95, 50), radius=w * 0.04)
    c.ellipse(x, base - w * 0.5, w * 0.4, w * 0.14, (250, 205, 60), glow=True)
    c.rect(x - w / 2, base - w * 0.5, x + w / 2, base - w * 0.4, (120, 75, 40))
    c.rect(x - w * 0.07, base - w * 0.42, x + w * 0.07, base - w * 0.25, (240, 200, 70))


def rocket(c: Canvas, x: float, base: float, h: float) -> None:
    w = h * 0.28
    for side in (-1, 1):
        c.poly([(x + side * w * 0.5, base - h * 0.35), (x + side * w * 1.05, base),
                (x + side * w * 0.45, base - h * 0.05)], (220, 60, 60))
    c.ellipse(x, base - h * 0.5, w / 2, h * 0.5, (235, 235, 240))
    c.poly([(x - w * 0.42, base - h * 0.78), (x + w * 0.42, base - h * 0.78), (x, base - h)],
           (220, 60, 60))
    c.circle(x, base - h * 0.58, w * 0.2, (120, 190, 240))


def rainbow(c: Canvas, x: float, y: float, r: float) -> None:
    colours = ((235, 70, 70), (245, 150, 50), (250, 220, 70), (90, 190, 90), (70, 140, 230),
               (150, 90, 200))
    band = r * 0.07
    for k, rgb in enumerate(colours):
        rr = r - k * band
        colour = c.paint(rgb, glow=True)
        c.draw.arc((x - rr, y - rr, x + rr, y + rr), 180, 360, fill=(*colour, 150),
                   width=max(1, round(band)))


def butterfly(c: Canvas, x: float, y: float, r: float, rgb: RGB) -> None:
    for side in (-1, 1):
        c.ellipse(x + side * r * 0.55, y - r * 0.25, r * 0.55, r * 0.45, rgb, line=False)
        c.ellipse(x + side * r * 0.45, y + r * 0.35, r * 0.38, r * 0.32, shade(rgb, 0.85),
                  line=False)
    c.ellipse(x, y, r * 0.1, r * 0.55, (50, 40, 40), line=False)


def star(c: Canvas, x: float, y: float, r: float, rgb: RGB = (255, 245, 200)) -> None:
    """A four-pointed twinkle."""
    k = r * 0.25
    c.poly([(x, y - r), (x + k, y - k), (x + r, y), (x + k, y + k), (x, y + r), (x - k, y + k),
            (x - r, y), (x - k, y - k)], rgb, glow=True, line=False)
