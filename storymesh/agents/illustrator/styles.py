"""Art-style presets: what each of vocabulary.ART_STYLES means to each backend.

For diffusers a style is prompt text: suffix phrases (most important first, so a long prompt
sheds the least important ones) and a negative prompt. For the embedded painter it is a
palette transform, an outline, optional papercut shadows and sky banding, and a finishing
pass (texture, hatching, pixelation...). A unit test checks every catalog style has a preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from storymesh import vocabulary

RGB = tuple[int, int, int]

# Things no children's book picture wants, whatever the style.
BASE_NEGATIVE = ("blurry, low quality, deformed, extra limbs, text, watermark, signature, "
                 "nsfw, violence, gore, scary")


@dataclass(frozen=True, slots=True)
class PainterStyle:
    """How the embedded painter renders one art style."""

    saturation: float = 1.0  # 1 keeps colours, <1 mutes them, >1 makes them bolder
    lighten: float = 0.0  # mix towards white, 0..1
    tint: RGB | None = None  # a colour to mix towards (sepia for vintage)
    tint_amount: float = 0.0
    greyscale: bool = False
    outline: float = 0.0  # outline width as a fraction of the picture's short side
    outline_rgb: RGB = (40, 30, 30)
    shadow: float = 0.0  # papercut drop-shadow offset, fraction of the short side
    sky_bands: int = 0  # 0: smooth sky gradient; n: n flat bands
    finish: str = "none"  # the finishing pass, see painter.finish


@dataclass(frozen=True, slots=True)
class StylePreset:
    """One art style for both backends."""

    name: str
    prompt_phrases: tuple[str, ...]  # most important first
    negative: str
    painter: PainterStyle


def _preset(name: str, phrases: str, negative: str, painter: PainterStyle) -> StylePreset:
    parts = tuple(p.strip() for p in phrases.split(",") if p.strip())
    return StylePreset(name, parts, f"{negative}, {BASE_NEGATIVE}", painter)


STYLES = MappingProxyType({
    "children_book": _preset(
        "children_book",
        "children's picture book illustration, bright friendly colors, soft shading, "
        "clean lines, whimsical, highly detailed",
        "photo, photorealistic, dark, gritty",
        PainterStyle(saturation=1.1, outline=0.004, finish="soft"),
    ),
    "watercolor": _preset(
        "watercolor",
        "watercolor painting, soft pastel colors, wet paint bleeding, paper texture, "
        "children's book illustration, delicate",
        "photo, 3d render, hard outlines, neon",
        PainterStyle(saturation=0.8, lighten=0.2, finish="watercolor"),
    ),
    "pencil_sketch": _preset(
        "pencil_sketch",
        "pencil sketch, graphite drawing, cross hatching, black and white, on white paper, "
        "hand drawn",
        "color, colour, painting, photo",
        PainterStyle(greyscale=True, outline=0.003, outline_rgb=(50, 50, 50),
                     finish="pencil"),
    ),
    "comic": _preset(
        "comic",
        "comic book art, bold black outlines, flat vivid colors, halftone shading, "
        "dynamic composition",
        "photo, watercolor, blurry, muted colors",
        PainterStyle(saturation=1.35, outline=0.009, outline_rgb=(10, 10, 10),
                     sky_bands=4, finish="comic"),
    ),
    "pixel_art": _preset(
        "pixel_art",
        "pixel art, 16-bit retro video game style, crisp pixels, limited palette",
        "smooth, blurry, photo, painting, anti-aliasing",
        PainterStyle(saturation=1.2, outline=0.006, outline_rgb=(20, 20, 30), sky_bands=6,
                     finish="pixel"),
    ),
    "oil_painting": _preset(
        "oil_painting",
        "oil painting, rich colors, visible brush strokes, canvas texture, classical, "
        "warm light",
        "photo, flat colors, cartoon, digital art",
        PainterStyle(saturation=1.15, tint=(120, 80, 30), tint_amount=0.06, finish="oil"),
    ),
    "papercut": _preset(
        "papercut",
        "layered paper cut art, cut paper craft, flat shapes, drop shadows, "
        "depth layers, handmade",
        "photo, gradient, painting, 3d render",
        PainterStyle(saturation=1.0, shadow=0.008, sky_bands=5, finish="paper"),
    ),
    "storybook_vintage": _preset(
        "storybook_vintage",
        "vintage storybook illustration, 1950s golden book style, muted warm colors, "
        "aged paper, fine ink lines",
        "modern, neon, photo, 3d render",
        PainterStyle(saturation=0.7, lighten=0.08, tint=(150, 110, 60), tint_amount=0.2,
                     outline=0.003, outline_rgb=(70, 45, 25), finish="vintage"),
    ),
})

if set(STYLES) != set(vocabulary.ART_STYLES):  # pragma: no cover - caught at import in tests
    raise RuntimeError("styles.STYLES must cover exactly vocabulary.ART_STYLES")


def preset(name: str) -> StylePreset:
    """The preset for an art style (already validated against vocabulary.ART_STYLES)."""
    return STYLES[name]
