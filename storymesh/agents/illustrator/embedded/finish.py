"""Finishing passes: what turns the flat painting into a watercolour, a sketch, pixel art...

Each pass takes the painted picture at its target size and a seeded `random.Random` (all
texture noise comes from it, so a seed gives the same bytes every time) and returns the
finished picture. PainterStyle.finish names the pass.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps

Finish = Callable[[Image.Image, random.Random], Image.Image]


def _noise(rng: random.Random, size: tuple[int, int], cell: int = 1) -> Image.Image:
    """Seeded grey noise; `cell` > 1 gives soft blotches instead of grain."""
    w, h = max(1, size[0] // cell), max(1, size[1] // cell)
    grain = Image.frombytes("L", (w, h), rng.randbytes(w * h))
    if cell == 1:
        return grain
    return grain.resize(size, Image.Resampling.BICUBIC)


def _texture(img: Image.Image, noise: Image.Image, strength: float) -> Image.Image:
    """Multiply by noise squeezed into [255 * (1 - strength), 255]: paper, canvas, grain."""
    low = round(255 * (1 - strength))
    lut = [low + (255 - low) * v // 255 for v in range(256)]
    return ImageChops.multiply(img, noise.point(lut).convert("RGB"))


def _vignette(img: Image.Image, strength: float) -> Image.Image:
    mask = Image.radial_gradient("L").resize(img.size, Image.Resampling.BILINEAR)
    mask = mask.point(lambda v: round(max(0, v - 150) * 255 / 105 * strength))
    return Image.composite(ImageEnhance.Brightness(img).enhance(0.55), img, mask)


def soft(img: Image.Image, rng: random.Random) -> Image.Image:
    return _vignette(_texture(img, _noise(rng, img.size), 0.04), 0.35)


def watercolor(img: Image.Image, rng: random.Random) -> Image.Image:
    radius = max(0.8, min(img.size) / 400)
    wet = img.filter(ImageFilter.GaussianBlur(radius))
    # Pigment pools at the edge of a wash: darken along the colour edges.
    edges = wet.convert("L").filter(ImageFilter.FIND_EDGES).point(lambda v: min(90, v))
    edges = edges.filter(ImageFilter.GaussianBlur(radius * 0.7))
    wet = ImageChops.subtract(wet, Image.merge("RGB", (edges, edges, edges)))
    blotches = _noise(rng, img.size, cell=max(4, min(img.size) // 24))
    wet = _texture(wet, blotches, 0.12)
    return _texture(wet, _noise(rng, img.size).filter(ImageFilter.BoxBlur(1)), 0.1)


def pencil(img: Image.Image, rng: random.Random) -> Image.Image:
    grey = img.convert("L")
    w, h = img.size
    lines = ImageChops.invert(grey.filter(ImageFilter.FIND_EDGES).point(lambda v: min(255, v * 3)))
    paper = Image.new("L", img.size, 250)
    step = max(3, min(w, h) // 90)
    for threshold, direction in ((135, 1), (95, -1), (55, 1)):
        hatch = Image.new("L", img.size, 255)
        draw = ImageDraw.Draw(hatch)
        for k in range(-h, w + h, step):
            jitter = rng.uniform(-0.4, 0.4) * step
            if direction > 0:
                draw.line((k + jitter, 0, k + h + jitter, h), fill=120, width=1)
            else:
                draw.line((k + jitter, h, k + h + jitter, 0), fill=120, width=1)
        if threshold == 55:
            draw_offset = ImageChops.offset(hatch, step // 2, 0)
            hatch = ImageChops.multiply(hatch, draw_offset)
        dark = grey.point(lambda v, t=threshold: 255 if v < t else 0)
        paper = Image.composite(ImageChops.multiply(paper, hatch), paper, dark)
    shade = grey.point(lambda v: 150 + v * 105 // 255)
    sketch = ImageChops.multiply(ImageChops.multiply(paper, shade), lines)
    sketch = _texture(sketch.convert("RGB"), _noise(rng, img.size), 0.06)
    return ImageChops.multiply(sketch, Image.new("RGB", img.size, (250, 246, 238)))


def comic(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    step = max(4, min(w, h) // 80)
    dots = Image.new("L", img.size, 255)
    draw = ImageDraw.Draw(dots)
    r = step * 0.28
    for y in range(0, h, step):
        offset = step / 2 if (y // step) % 2 else 0
        for x in range(0, w, step):
            cx = x + offset
            draw.ellipse((cx - r, y - r, cx + r, y + r), fill=150)
    # Halftone only in the shadows, the way cheap comic print shades.
    shadows = img.convert("L").point(lambda v: 255 if v < 120 else 0)
    toned = Image.composite(ImageChops.multiply(img, dots.convert("RGB")), img, shadows)
    return ImageEnhance.Contrast(toned).enhance(1.1)


def pixel(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    cell = max(2, round(min(w, h) / 96))
    small = img.resize((max(1, w // cell), max(1, h // cell)), Image.Resampling.BOX)
    small = small.quantize(colors=32, method=Image.Quantize.MEDIANCUT,
                           dither=Image.Dither.NONE).convert("RGB")
    return small.resize((w, h), Image.Resampling.NEAREST)


def oil(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    base = img.filter(ImageFilter.GaussianBlur(max(1.0, min(w, h) / 400)))
    out = base.copy()
    draw = ImageDraw.Draw(out)
    length, width = min(w, h) * 0.022, max(2, round(min(w, h) * 0.01))
    pixels = base.load()
    for _ in range(w * h // 120):
        x, y = rng.randrange(w), rng.randrange(h)
        angle = rng.uniform(-0.6, 0.6) + (math.pi / 2 if (x * 7 + y) % 5 == 0 else 0.0)
        dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
        draw.line((x - dx, y - dy, x + dx, y + dy), fill=pixels[x, y], width=width)  # type: ignore[index]
    canvas = _noise(rng, img.size).filter(ImageFilter.EMBOSS)
    out = _texture(out, canvas, 0.12)
    return ImageEnhance.Color(out).enhance(1.1)


def paper(img: Image.Image, rng: random.Random) -> Image.Image:
    fibres = _noise(rng, img.size).filter(ImageFilter.GaussianBlur(0.8))
    return _texture(img, ImageOps.autocontrast(fibres), 0.08)


def vintage(img: Image.Image, rng: random.Random) -> Image.Image:
    aged = _texture(img, _noise(rng, img.size, cell=max(4, min(img.size) // 16)), 0.08)
    aged = _texture(aged, _noise(rng, img.size), 0.05)
    return _vignette(aged, 0.45)


def none(img: Image.Image, rng: random.Random) -> Image.Image:
    return img


FINISHES: dict[str, Finish] = {
    "none": none, "soft": soft, "watercolor": watercolor, "pencil": pencil, "comic": comic,
    "pixel": pixel, "oil": oil, "paper": paper, "vintage": vintage,
}
