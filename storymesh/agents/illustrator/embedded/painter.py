"""The embedded illustrator: a procedural Pillow painter that needs no model weights.

It reads the prompt into a Scene (scene.py), paints the setting (landscape.py), stands the
figures on it (figures.py), adds weather and finishes the picture in the art style
(finish.py). Every random choice comes from `random.Random(seed)`, so one seed gives one
picture, byte for byte. A 512x512 picture takes well under half a second on one core.
"""

from __future__ import annotations

import io
import random

from PIL import Image

from storymesh.agents.illustrator.embedded import figures, landscape, props
from storymesh.agents.illustrator.embedded.canvas import Canvas, Light, light_for
from storymesh.agents.illustrator.embedded.finish import FINISHES
from storymesh.agents.illustrator.embedded.scene import Figure, Scene, read_scene
from storymesh.agents.illustrator.request import IllustrationRequest
from storymesh.agents.illustrator.styles import preset

# Where figures stand across the picture, by how many there are (fractions of the width).
SPOTS: dict[int, tuple[float, ...]] = {
    1: (0.5,), 2: (0.36, 0.64), 3: (0.24, 0.5, 0.76), 4: (0.17, 0.39, 0.61, 0.83),
}
SUPERSAMPLE_UP_TO = 1024  # larger pictures are drawn at 1x: smooth enough, and faster


def _light(scene: Scene) -> Light:
    if scene.setting == "space":
        return Light((0.85, 0.85, 0.98), (40, 40, 90), 0.08)
    if scene.setting == "room" and scene.time == "night":
        return Light((0.78, 0.7, 0.58), (255, 200, 120), 0.08)  # lamplight, not moonlight
    if scene.setting == "cave":
        base = light_for(scene.time, scene.weather)
        return Light(tuple(m * 0.8 for m in base.mul), base.mix, base.amount)  # type: ignore[arg-type]
    return light_for(scene.time, scene.weather)


def _place(c: Canvas, stage: landscape.Stage, cast: tuple[Figure, ...],
           rng: random.Random) -> None:
    """Stand walkers on the ground, fliers in the sky and swimmers in water."""
    walkers = [f for f in cast if f.kind not in figures.FLYERS + figures.SWIMMERS]
    spots = SPOTS.get(len(walkers), SPOTS[4])
    if stage.spots is not None and len(walkers) < len(SPOTS):
        spots = stage.spots[:len(walkers)] if len(walkers) > 1 else (stage.spots[1],)
    for i, (f, spot) in enumerate(zip(walkers, spots, strict=False)):
        x = c.w * (spot + rng.uniform(-0.015, 0.015))
        size = stage.figure_h * figures.SIZES.get(f.kind, 1.0) * (1.1 if i == 0 else 1.0)
        c.draw.ellipse((x - size * 0.28, stage.ground - size * 0.04, x + size * 0.28,
                        stage.ground + size * 0.04), fill=(0, 0, 0, 45))
        figures.draw_figure(c, f, x, stage.ground, size, facing=-1 if spot < 0.5 else 1)
    for f in cast:
        if f in walkers:
            continue
        size = stage.figure_h * figures.SIZES[f.kind] * (1.5 if f is cast[0] else 1.0)
        if f.kind in figures.FLYERS:
            y = c.h * rng.uniform(0.18, 0.32)
        elif stage.water is not None:
            y = rng.uniform(*stage.water)
        else:  # a fish out of water leaps from a little pond
            y = stage.ground - size * 0.6
            c.ellipse(c.w * 0.85, stage.ground, size * 0.7, size * 0.15, (70, 140, 210))
            figures.draw_figure(c, f, c.w * 0.85, y, size)
            continue
        figures.draw_figure(c, f, c.w * rng.uniform(0.15, 0.85), y, size,
                            facing=rng.choice((-1, 1)))


def _props_in_front(c: Canvas, scene: Scene, stage: landscape.Stage) -> None:
    """Props that sit on the ground next to the figures."""
    u, g = c.u, stage.ground
    if "campfire" in scene.props:
        props.campfire(c, c.w * 0.5, g + u * 0.03, u * 0.08)
    if "lantern" in scene.props:
        props.lantern(c, c.w * 0.08, g, u * 0.09)
    if "treasure" in scene.props:
        props.treasure(c, c.w * 0.9, g + u * 0.02, u * 0.12)
    if "tent" in scene.props and scene.setting not in ("room", "space", "underwater", "sea"):
        props.tent(c, c.w * 0.88, stage.ground - u * 0.1, u * 0.25)


def _props_in_sky(c: Canvas, scene: Scene, stage: landscape.Stage, rng: random.Random) -> None:
    if scene.setting in ("room", "underwater", "cave"):
        return
    if "balloon" in scene.props:
        for k, rgb in enumerate(((230, 70, 80), (80, 150, 230), (250, 200, 60))):
            props.balloon(c, c.w * (0.2 + k * 0.05), c.h * (0.3 - k * 0.03), c.u * 0.04, rgb)
    if "kite" in scene.props:
        props.kite(c, c.w * 0.7, c.h * 0.22, c.u * 0.05)
    if "castle" in scene.props and scene.setting not in ("castle", "city", "space"):
        props.castle(c, c.w * 0.2, stage.horizon + c.h * 0.02, c.h * 0.14, scene.time == "night")
    if "house" in scene.props and scene.setting in ("forest", "garden", "snow", "mountain"):
        props.house(c, c.w * 0.82, stage.ground - c.h * 0.12, c.w * 0.16, (245, 225, 190),
                    (200, 70, 60), scene.time == "night")


def paint(request: IllustrationRequest, scene: Scene | None = None) -> Image.Image:
    """Paint the picture a request describes (its scene read from the prompt if not given)."""
    if scene is None:
        scene = read_scene(request.prompt, request.characters, request.negative_prompt)
    style = preset(request.art_style).painter
    rng = random.Random(request.seed)
    scale = 2 if max(request.width, request.height) <= SUPERSAMPLE_UP_TO else 1
    c = Canvas(request.width, request.height, style, _light(scene), rng, scale)
    stage = landscape.paint_setting(c, scene, rng)
    _props_in_sky(c, scene, stage, rng)
    landscape.paint_mist(c, scene)
    with c.subject():
        _place(c, stage, scene.figures, rng)
        _props_in_front(c, scene, stage)
    if stage.front is not None:
        stage.front()
    landscape.paint_weather(c, scene, rng)
    picture = c.finish(request.width, request.height)
    return FINISHES[style.finish](picture, rng)


def to_png(image: Image.Image) -> bytes:
    """PNG bytes; Pillow's encoder is deterministic for the same pixels and options."""
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


def render_png(request: IllustrationRequest) -> bytes:
    return to_png(paint(request))


def render(request: IllustrationRequest) -> tuple[bytes, dict[str, str]]:
    """The PNG and what each figure was drawn as ({"tortoise": "turtle", "Pip": "mouse"})."""
    scene = read_scene(request.prompt, request.characters, request.negative_prompt)
    return to_png(paint(request, scene)), scene.drawn_as()
