"""The embedded painter's canvas: Pillow drawing with light, palette, outline and shadow.

Scene code asks for "a grey ellipse here"; the canvas decides how it looks: the time of day
and weather light it (moonlit blue at night, warm at sunset) unless it glows (a lit window, a
star), the art style maps the colour (muted, sepia, greyscale), and the style's outline or
papercut drop shadow is added. Drawing happens at `scale` times the target size and is
downsampled at the end, which gives smooth edges.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageDraw

from storymesh.agents.illustrator.styles import RGB, PainterStyle

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Light:
    """Time-of-day and weather light: a channel multiplier, then a mix towards a colour."""

    mul: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mix: RGB = (255, 255, 255)
    amount: float = 0.0


LIGHTS: dict[str, Light] = {
    "day": Light(),
    "morning": Light((1.0, 0.97, 0.93), (255, 200, 160), 0.10),
    "sunset": Light((1.0, 0.84, 0.72), (255, 120, 70), 0.16),
    "night": Light((0.30, 0.36, 0.60), (20, 30, 80), 0.12),
}


def light_for(time: str, weather: str) -> Light:
    """The light of a scene: its time of day, dimmed or hazed by its weather."""
    base = LIGHTS.get(time, LIGHTS["day"])
    dim = {"rain": 0.82, "storm": 0.62, "fog": 0.95}.get(weather, 1.0)
    mul = (base.mul[0] * dim, base.mul[1] * dim, base.mul[2] * min(1.0, dim * 1.08))
    if weather == "fog":
        return Light(mul, (215, 220, 226), max(base.amount, 0.3))
    return Light(mul, base.mix, base.amount)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear blend from a (t=0) to b (t=1)."""
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t),
            round(a[2] + (b[2] - a[2]) * t))


def shade(rgb: RGB, factor: float) -> RGB:
    """Darker (factor < 1) or lighter towards white (factor > 1)."""
    if factor <= 1.0:
        return (round(rgb[0] * factor), round(rgb[1] * factor), round(rgb[2] * factor))
    return mix(rgb, (255, 255, 255), min(1.0, factor - 1.0))


def _clamp(value: float) -> int:
    return 0 if value < 0 else 255 if value > 255 else round(value)


class Canvas:
    """A picture being painted; sizes are in canvas pixels (`u` is the short side)."""

    def __init__(self, width: int, height: int, style: PainterStyle, light: Light,
                 rng: random.Random, scale: int = 2) -> None:
        self.scale = scale
        self.w, self.h = width * scale, height * scale
        self.u = min(self.w, self.h)
        self.style = style
        self.light = light
        self.rng = rng
        self.img = Image.new("RGB", (self.w, self.h), (255, 255, 255))
        self.draw = ImageDraw.Draw(self.img, "RGBA")
        self._lit = 1.0  # how strongly the scene light applies (less on the story's subject)
        self._cache: dict[tuple[RGB, bool, float], RGB] = {}
        self._line = max(1, round(style.outline * self.u)) if style.outline else 0
        self._shadow = round(style.shadow * self.u)

    # -- colour ------------------------------------------------------------------------
    def paint(self, rgb: RGB, glow: bool = False) -> RGB:
        """The colour actually put down for `rgb`: lit (unless it glows), then styled."""
        key = (rgb, glow, self._lit)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._styled(rgb if glow else self._lit_colour(rgb))
        return cached

    def _lit_colour(self, rgb: RGB) -> RGB:
        light = self.light
        lit = (rgb[0] * light.mul[0], rgb[1] * light.mul[1], rgb[2] * light.mul[2])
        lit_rgb = mix((_clamp(lit[0]), _clamp(lit[1]), _clamp(lit[2])), light.mix, light.amount)
        return mix(rgb, lit_rgb, self._lit)

    def _styled(self, rgb: RGB) -> RGB:
        style = self.style
        luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        if style.greyscale:
            grey = _clamp(luma)
            return (grey, grey, grey)
        sat = [luma + (c - luma) * style.saturation for c in rgb]
        out = (_clamp(sat[0]), _clamp(sat[1]), _clamp(sat[2]))
        if style.lighten:
            out = mix(out, (255, 255, 255), style.lighten)
        if style.tint is not None:
            out = mix(out, style.tint, style.tint_amount)
        return out

    @contextmanager
    def subject(self, lit: float = 0.45) -> Iterator[None]:
        """Draw the story's figures more brightly than their surroundings (they are the point)."""
        before, self._lit = self._lit, lit
        try:
            yield
        finally:
            self._lit = before

    # -- shapes ------------------------------------------------------------------------
    def _outline(self, line: bool) -> tuple[RGB | None, int]:
        if not (line and self._line):
            return None, 0
        return self.paint(self.style.outline_rgb, glow=True), self._line

    def _casts_shadow(self, box: Sequence[float]) -> bool:
        big = self.u * 0.05
        return bool(self._shadow) and box[2] - box[0] > big and box[3] - box[1] > big

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, rgb: RGB, *,
                glow: bool = False, line: bool = True) -> None:
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        if self._casts_shadow(box):
            s = self._shadow
            self.draw.ellipse((box[0] + s, box[1] + s, box[2] + s, box[3] + s),
                              fill=(0, 0, 0, 70))
        outline, width = self._outline(line)
        self.draw.ellipse(box, fill=self.paint(rgb, glow), outline=outline, width=width)

    def circle(self, cx: float, cy: float, r: float, rgb: RGB, *, glow: bool = False,
               line: bool = True) -> None:
        self.ellipse(cx, cy, r, r, rgb, glow=glow, line=line)

    def poly(self, points: Sequence[Point], rgb: RGB, *, glow: bool = False,
             line: bool = True) -> None:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if self._casts_shadow((min(xs), min(ys), max(xs), max(ys))):
            s = self._shadow
            self.draw.polygon([(x + s, y + s) for x, y in points], fill=(0, 0, 0, 70))
        outline, width = self._outline(line)
        self.draw.polygon(list(points), fill=self.paint(rgb, glow), outline=outline,
                          width=width)

    def rect(self, x0: float, y0: float, x1: float, y1: float, rgb: RGB, *,
             radius: float = 0, glow: bool = False, line: bool = True) -> None:
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        # Pillow refuses corners rounder than the box (tiny parts of small pictures).
        radius = max(0, min(radius, (box[2] - box[0]) / 2 - 1, (box[3] - box[1]) / 2 - 1))
        if self._casts_shadow(box):
            s = self._shadow
            self.draw.rounded_rectangle((box[0] + s, box[1] + s, box[2] + s, box[3] + s),
                                        radius=radius, fill=(0, 0, 0, 70))
        outline, width = self._outline(line)
        self.draw.rounded_rectangle(box, radius=radius, fill=self.paint(rgb, glow),
                                    outline=outline, width=width)

    def stroke(self, points: Sequence[Point], rgb: RGB, width: float, *,
               glow: bool = False) -> None:
        """A polyline with round joints (tails, stems, whiskers): never outlined."""
        w = max(1, round(width))
        self.draw.line(list(points), fill=self.paint(rgb, glow), width=w, joint="curve")
        r = w / 2
        for x, y in (points[0], points[-1]):
            self.draw.ellipse((x - r, y - r, x + r, y + r), fill=self.paint(rgb, glow))

    def arc(self, cx: float, cy: float, rx: float, ry: float, start: float, end: float,
            rgb: RGB, width: float, *, glow: bool = False) -> None:
        """Part of an ellipse's rim, in degrees clockwise from 3 o'clock (smiles, waves)."""
        self.draw.arc((cx - rx, cy - ry, cx + rx, cy + ry), start, end,
                      fill=self.paint(rgb, glow), width=max(1, round(width)))

    def halo(self, cx: float, cy: float, r: float, rgb: RGB, alpha: int = 60) -> None:
        """A soft light around a glowing thing: a few translucent discs."""
        colour = self.paint(rgb, glow=True)
        for k in range(4):
            rr = r * (1.0 - k * 0.2)
            self.draw.ellipse((cx - rr, cy - rr, cx + rr, cy + rr),
                              fill=(*colour, alpha // 2 + k * alpha // 6))

    def veil(self, rgb: RGB, alpha: int, y0: float = 0, y1: float | None = None) -> None:
        """A translucent wash over a band of the picture (fog, rain gloom)."""
        self.draw.rectangle((0, y0, self.w, self.h if y1 is None else y1),
                            fill=(*self.paint(rgb, glow=True), alpha))

    def gradient(self, y0: float, y1: float, stops: Sequence[tuple[float, RGB]]) -> None:
        """A vertical gradient through colour stops (glowing: sky colours are already lit)."""
        top, bottom = round(y0), round(y1)
        rows = max(2, bottom - top)
        bands = self.style.sky_bands
        column = Image.new("RGB", (1, rows))
        pixels = column.load()
        for y in range(rows):
            t = y / (rows - 1)
            if bands:  # papercut/comic skies come in flat bands
                t = min(bands - 1, int(t * bands)) / max(1, bands - 1)
            pixels[0, y] = self.paint(_at(stops, t), glow=True)  # type: ignore[index]
        self.img.paste(column.resize((self.w, rows), Image.Resampling.NEAREST), (0, top))

    def finish(self, width: int, height: int) -> Image.Image:
        """The painted picture at its target size."""
        if self.scale == 1:
            return self.img
        return self.img.resize((width, height), Image.Resampling.LANCZOS)


def _at(stops: Sequence[tuple[float, RGB]], t: float) -> RGB:
    """The colour at t along gradient stops [(0.0, rgb), ..., (1.0, rgb)]."""
    for (t0, c0), (t1, c1) in itertools.pairwise(stops):
        if t <= t1:
            return mix(c0, c1, 0.0 if t1 == t0 else (t - t0) / (t1 - t0))
    return stops[-1][1]
