"""The illustrator agent: embedded painter and diffusers backend, through the Agent interface.

Embedded tests render real pictures and look at their pixels (size, determinism, scene
colours, style traits). Diffusers tests load a tiny random Stable Diffusion pipeline from a
folder (testkit/tiny_models.py) through `IllustratorAgent(backend="diffusers", model=...)`,
the same path a user's model takes.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from storymesh import vocabulary
from storymesh.agents.author.embedded.storyteller import write_outline
from storymesh.agents.illustrator import IllustratorAgent
from storymesh.agents.illustrator.embedded.scene import read_figure, read_scene
from storymesh.agents.illustrator.prompt import CLIP_BUDGET, approx_tokens, build_prompt
from storymesh.agents.illustrator.request import Character, Defaults, parse_request
from storymesh.errors import ConfigError, FatalAgentError
from storymesh.runtime.agent import Final, Request

PIP = {"name": "Pip", "look": "a small grey mouse with a red scarf"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def draw(agent: IllustratorAgent, cancel: threading.Event | None = None,
         **payload: Any) -> dict[str, Any]:
    """Run one request through the agent; return the FINAL payload."""
    request = Request(id="r1", payload=payload)
    if cancel is not None:
        request.cancel = cancel
    replies = list(agent.handle(request))
    assert len(replies) == 1
    assert isinstance(replies[0], Final)
    return replies[0].payload


def picture(reply: dict[str, Any]) -> Image.Image:
    png = reply["png"]
    assert isinstance(png, bytes)
    assert png.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


def brightness(image: Image.Image) -> float:
    return float(ImageStat.Stat(image.convert("L")).mean[0])


def red_pixels(image: Image.Image) -> int:
    r, g, b = image.split()
    mask = ImageChops.multiply(ImageChops.multiply(
        r.point(lambda v: 255 if v > 170 else 0), g.point(lambda v: 255 if v < 90 else 0)),
        b.point(lambda v: 255 if v < 90 else 0))
    return mask.histogram()[255]


def colours(image: Image.Image) -> int:
    return len(image.getcolors(maxcolors=1 << 24) or ())


@pytest.fixture(scope="module")
def painter() -> IllustratorAgent:
    agent = IllustratorAgent()
    agent.setup()
    return agent


# -- embedded ------------------------------------------------------------------------------
def test_setup_reports_the_embedded_backend() -> None:
    # Given the default agent / When it sets up
    info = IllustratorAgent().setup()
    # Then it announces the embedded painter on the CPU
    assert info.backend == "embedded"
    assert info.device == "cpu"


def test_embedded_returns_a_png_of_the_requested_size(painter: IllustratorAgent) -> None:
    # Given a request for a 320x200 picture
    # When the painter draws it
    reply = draw(painter, prompt="Pip the mouse in the forest", characters=[PIP],
                 width=320, height=200, seed=4)
    # Then the FINAL carries a PNG of exactly that size and says how it was made
    assert picture(reply).size == (320, 200)
    assert (reply["width"], reply["height"], reply["seed"], reply["backend"]) == \
        (320, 200, 4, "embedded")


def test_same_seed_gives_identical_bytes(painter: IllustratorAgent) -> None:
    # Given one request
    payload: dict[str, Any] = {"prompt": "a fox and an owl by the castle at sunset", "seed": 11,
               "width": 192, "height": 192, "art_style": "watercolor"}
    # When it is drawn twice, and once more with another seed
    first, second = draw(painter, **payload), draw(painter, **payload)
    other = draw(painter, **{**payload, "seed": 12})
    # Then the same seed gives the same bytes, another seed another picture
    assert first["png"] == second["png"]
    assert other["png"] != first["png"]


def test_missing_seed_is_derived_from_the_prompt_and_reported(
        painter: IllustratorAgent) -> None:
    # Given requests without a seed
    a = draw(painter, prompt="a rabbit in the snow", width=128, height=128)
    b = draw(painter, prompt="a rabbit in the snow", width=128, height=128)
    c = draw(painter, prompt="a rabbit in the desert", width=128, height=128)
    # Then the same prompt gets the same reported seed and picture, and the seed replays it
    assert isinstance(a["seed"], int)
    assert a["seed"] == b["seed"]
    assert a["png"] == b["png"]
    assert c["seed"] != a["seed"]
    replay = draw(painter, prompt="a rabbit in the snow", width=128, height=128,
                  seed=a["seed"])
    assert replay["png"] == a["png"]


def test_prompts_paint_recognisably_different_scenes(painter: IllustratorAgent) -> None:
    # Given a forest at night and a sunny beach
    night = picture(draw(painter, prompt="Pip walks through the dark forest at night",
                         characters=[PIP], width=256, height=256, seed=1))
    beach = picture(draw(painter, prompt="Pip plays on a sunny beach by the sea",
                         characters=[PIP], width=256, height=256, seed=1))
    # Then the night picture is far darker, and the beach has sand-yellow and sea-blue
    assert brightness(night) < 80
    assert brightness(beach) > 150
    lower = beach.crop((0, 200, 256, 256))
    r, _, b = ImageStat.Stat(lower).mean
    assert r > b + 40, "the bottom of a beach picture should be sand"
    r, _, b = ImageStat.Stat(beach.crop((0, 128, 256, 150))).mean
    assert b > r + 40, "the middle band of a beach picture should be sea"


def test_character_look_colours_are_painted(painter: IllustratorAgent) -> None:
    # Given the same mouse with a red and with a blue scarf
    base: dict[str, Any] = {"prompt": "Pip in the snowy mountains", "width": 256, "height": 256, "seed": 3}
    red = picture(draw(painter, characters=[PIP], **base))
    blue = picture(draw(painter, characters=[{**PIP, "look": "a grey mouse, blue scarf"}],
                        **base))
    # Then the red scarf shows up as red pixels the blue one does not have
    assert red_pixels(red) > red_pixels(blue) + 50


@pytest.mark.parametrize("style", vocabulary.ART_STYLES)
def test_every_art_style_renders(painter: IllustratorAgent, style: str) -> None:
    # Given a request in each catalog style / When it is drawn
    image = picture(draw(painter, prompt="a dog and a cat in the village garden",
                         art_style=style, width=160, height=128, seed=2))
    # Then it is a real picture of the asked size, not a flat fill
    assert image.size == (160, 128)
    assert ImageStat.Stat(image.convert("L")).stddev[0] > 20


def test_styles_look_like_themselves(painter: IllustratorAgent) -> None:
    # Given one scene in three styles
    scene: dict[str, Any] = {"prompt": "a bear in the forest", "width": 192, "height": 192, "seed": 5}
    pencil = picture(draw(painter, art_style="pencil_sketch", **scene))
    pixel = picture(draw(painter, art_style="pixel_art", **scene))
    book = picture(draw(painter, art_style="children_book", **scene))
    # Then the sketch has (almost) no colour, pixel art few colours, the book many
    r, g, b = ImageStat.Stat(pencil).mean
    assert max(r, g, b) - min(r, g, b) < 15
    assert colours(pixel) <= 32 < colours(book)


def test_a_512_picture_is_fast(painter: IllustratorAgent) -> None:
    # Given a busy scene at 512x512
    started = time.perf_counter()
    draw(painter, prompt="a dragon, a fox and a girl by the castle in the storm", seed=9,
         art_style="oil_painting")
    # Then it is drawn quickly even on a shared CPU (typically about 0.1 s)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(("payload", "code", "words"), [
    ({"prompt": "a cat", "width": 8000, "height": 8000}, "bad_request", "'width'"),
    ({"prompt": "   "}, "bad_request", "'prompt'"),
    ({}, "bad_request", "'prompt' is required"),
    ({"prompt": "a cat", "art_style": "cubism"}, "bad_request", "art_style"),
    ({"prompt": "x" * 100_000}, "too_large", "'prompt'"),
    ({"prompt": "a cat", "steps": 0}, "bad_request", "'steps'"),
    ({"prompt": "a cat", "steps": vocabulary.MAX_STEPS + 1}, "bad_request", "'steps'"),
    ({"prompt": "a cat", "height": "tall"}, "bad_request", "'height' must be an integer"),
    ({"prompt": "a cat", "width": True}, "bad_request", "'width'"),
    ({"prompt": "a cat", "seed": -1}, "bad_request", "'seed'"),
    ({"prompt": "a cat", "guidance": float("nan")}, "bad_request", "'guidance'"),
    ({"prompt": "a cat", "characters": "Pip"}, "bad_request", "'characters'"),
    ({"prompt": "a cat", "characters": [{"look": "a mouse"}]}, "bad_request", "'name'"),
    ({"prompt": 42}, "bad_request", "'prompt' must be a string"),
])
def test_bad_requests_get_a_clear_error(painter: IllustratorAgent, payload: dict[str, Any],
                                        code: str, words: str) -> None:
    # Given a malformed request / When it is handled
    with pytest.raises(FatalAgentError) as caught:
        draw(painter, **payload)
    # Then it fails with the right code and a message naming the field
    assert caught.value.code == code
    assert words in caught.value.message


def test_a_cancelled_request_is_not_drawn(painter: IllustratorAgent) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(FatalAgentError) as caught:
        draw(painter, cancel=cancel, prompt="a cat")
    assert caught.value.code == "cancelled"


@pytest.mark.parametrize("options", [
    {"backend": "dall-e"}, {"dtype": "float8"}, {"width": 10}, {"steps": 0},
    {"torch_threads": 0},
])
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(options))):
        IllustratorAgent(**options)


# -- scene reading and prompts -------------------------------------------------------------
def test_scene_reads_setting_time_weather_and_cast() -> None:
    # Given a prompt with a cast member and two more animals
    cast = [Character(**PIP), Character("Tom", "a ginger cat")]
    scene = read_scene("Pip meets a brown fox and an owl outside the castle at sunset in "
                       "the rain", cast)
    # Then only the characters it names, plus the animals it mentions, are drawn
    assert (scene.setting, scene.time, scene.weather) == ("castle", "sunset", "rain")
    assert [f.kind for f in scene.figures] == ["mouse", "fox", "owl"]
    mouse = scene.figures[0]
    assert mouse.accessories["scarf"][0] > 150
    assert mouse.body[0] == mouse.body[1]
    assert scene.figures[1].body == (135, 88, 50)  # "brown fox"


@pytest.mark.parametrize(("look", "kind", "body"), [
    ("a black-and-white penguin with a bright orange beak", "penguin", (45, 45, 52)),
    ("a mouse with round pink ears", "mouse", (160, 160, 168)),  # pink ears, grey mouse
    ("a red-brown fox", "fox", (170, 66, 47)),  # a blend of both
    ("a pale pink pig", "bear", (247, 189, 207)),  # pink lightened; no pig figure: a bear
])
def test_looks_are_read_into_figures(look: str, kind: str, body: tuple[int, int, int]
                                     ) -> None:
    figure = read_figure(look)
    assert (figure.kind, figure.body) == (kind, body)


def test_people_wear_their_clothes_and_hats() -> None:
    witch = read_figure("a witch with wild purple hair and a pointy black hat")
    assert witch.kind == "girl"
    assert witch.hair == (135, 65, 175)
    assert set(witch.accessories) == {"wizard_hat"}
    assert witch.accessories["wizard_hat"] == (45, 45, 52)


def test_negative_prompt_words_are_not_drawn() -> None:
    scene = read_scene("a cat in the rain", negative_prompt="rain, dogs")
    assert scene.weather == "clear"


def test_prompt_folds_in_looks_and_keeps_the_subject_within_budget() -> None:
    # Given a request naming Pip, with a long cast
    cast = [PIP] + [{"name": f"Friend{k}", "look": "a tall green giraffe with a long neck"}
                    for k in range(8)]
    request = parse_request({"prompt": "Pip finds a glowing key under the old oak tree",
                             "characters": cast, "art_style": "watercolor"}, Defaults())
    # When the diffusers prompt is built
    prompt = build_prompt(request)
    # Then the subject and Pip's look come first, the style follows, and it fits CLIP
    assert prompt.startswith("Pip finds a glowing key under the old oak tree, "
                             "Pip, a small grey mouse with a red scarf, watercolor")
    assert "Friend" not in prompt
    assert approx_tokens(prompt) <= CLIP_BUDGET


def test_an_over_long_subject_is_kept_whole() -> None:
    subject = " ".join(["sleepy"] * 120)
    request = parse_request({"prompt": subject, "characters": [PIP]}, Defaults())
    assert build_prompt(request) == subject


# -- diffusers -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sd_agent(tiny_sd: Path) -> IllustratorAgent:
    agent = IllustratorAgent(backend="diffusers", model=str(tiny_sd), steps=2,
                             torch_threads=1)
    agent.setup()
    return agent


@pytest.mark.ml
def test_diffusers_setup_reports_the_loaded_model(tiny_sd: Path) -> None:
    # Given the tiny pipeline's folder / When the agent sets up from it
    agent = IllustratorAgent(backend="diffusers", model=str(tiny_sd), torch_threads=1)
    info = agent.setup()
    # Then it reports what it loaded
    assert (info.backend, info.model, info.device, info.dtype) == \
        ("diffusers", str(tiny_sd), "cpu", "float32")
    assert info.extra["safety_checker"] is False  # this model ships none
    agent.teardown()


@pytest.mark.ml
def test_diffusers_draws_a_png_of_the_requested_size(sd_agent: IllustratorAgent) -> None:
    reply = draw(sd_agent, prompt="Pip in the forest", characters=[PIP], width=128,
                 height=64, seed=3, steps=3)
    assert picture(reply).size == (128, 64)
    assert (reply["width"], reply["height"], reply["backend"]) == (128, 64, "diffusers")
    assert "nsfw" not in reply


@pytest.mark.ml
def test_diffusers_same_seed_same_pixels(sd_agent: IllustratorAgent) -> None:
    payload: dict[str, Any] = {"prompt": "a cat on the beach", "width": 64, "height": 64, "seed": 21}
    first, second = picture(draw(sd_agent, **payload)), picture(draw(sd_agent, **payload))
    other = picture(draw(sd_agent, **{**payload, "seed": 22}))
    assert first.tobytes() == second.tobytes()
    assert other.tobytes() != first.tobytes()


@pytest.mark.ml
def test_diffusers_rounds_sizes_to_the_vae_grid(sd_agent: IllustratorAgent) -> None:
    reply = draw(sd_agent, prompt="a dog", width=100, height=70, seed=1)
    assert picture(reply).size == (96, 72) == (reply["width"], reply["height"])


@pytest.mark.ml
def test_diffusers_stops_a_request_cancelled_mid_way(sd_agent: IllustratorAgent) -> None:
    class CancelledOnceStarted(threading.Event):
        """Not cancelled when the agent first looks; cancelled by the first step."""

        looks = 0

        def is_set(self) -> bool:
            self.looks += 1
            return self.looks > 1

    with pytest.raises(FatalAgentError) as caught:
        draw(sd_agent, cancel=CancelledOnceStarted(), prompt="a cat", width=64, height=64)
    assert caught.value.code == "cancelled"


@pytest.mark.ml
def test_flagged_pictures_are_withheld(tiny_sd_flagging: Path) -> None:
    # Given a model whose safety checker flags everything
    guarded = IllustratorAgent(backend="diffusers", model=str(tiny_sd_flagging), steps=2,
                               torch_threads=1)
    assert guarded.setup().extra["safety_checker"] is True
    # When it draws
    reply = draw(guarded, prompt="a cat", width=64, height=64, seed=1)
    # Then the reply says so and carries a blank placeholder, not the flagged image
    assert reply["nsfw"] is True
    assert colours(picture(reply)) == 1
    # And with the checker switched off the picture comes back
    open_agent = IllustratorAgent(backend="diffusers", model=str(tiny_sd_flagging), steps=2,
                                  safety_checker=False, torch_threads=1)
    assert open_agent.setup().extra["safety_checker"] is False
    reply = draw(open_agent, prompt="a cat", width=64, height=64, seed=1)
    assert "nsfw" not in reply
    assert colours(picture(reply)) > 1


def test_a_missing_model_folder_fails_at_setup(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    agent = IllustratorAgent(backend="diffusers", model=str(missing))
    with pytest.raises(FatalAgentError, match="no-such-model"):
        agent.setup()


def test_diffusers_without_a_model_fails_at_setup() -> None:
    with pytest.raises(FatalAgentError, match="needs a model"):
        IllustratorAgent(backend="diffusers").setup()


# -- the plot's subject: its own drawing, or the closest, said in `drawn_as` ---------------
@pytest.mark.parametrize(("look", "noun", "kind"), [
    ("a white cloud with a soft puffy shape and rosy cheeks", "cloud", "cloud"),
    ("an olive tortoise with a high domed shell", "tortoise", "turtle"),
    ("a green parrot with a hooked beak and rainbow feathers", "parrot", "bird"),
    ("a red clock with a friendly painted face", "clock", "clock"),
    ("a grandfather with white hair and a grey moustache, wearing a flat cap", "grandfather",
     "grandpa"),
    ("a grandmother with silver curls, wearing round glasses", "grandmother", "grandma"),
    ("a silver robot with a shiny metal body", "robot", "robot"),
    ("a green tractor with a friendly painted face", "tractor", "vehicle"),
    ("an orange tugboat with a friendly painted face", "tugboat", "boat"),
    ("a lighthouse keeper with short brown hair, wearing a kind smile", "keeper", "person"),
    ("a brown goat with soft fur and bright eyes", "goat", "dog"),
    ("a blue kettle with a friendly painted face", "kettle", "thing"),  # no drawing: a thing
    ("a green wombat with soft fur and bright eyes", "wombat", "bear"),  # unknown animal
    ("a potter with a red ponytail", "potter", "person"),  # unknown role with hair
])
def test_each_kind_gets_its_drawing_or_the_closest(look: str, noun: str, kind: str) -> None:
    # Given a character's look / When the painter reads it
    figure = read_figure(look, "Pip")
    # Then the figure keeps the word that named it and gets the drawing for it
    assert (figure.noun, figure.kind) == (noun, kind)


def test_the_reply_says_what_each_figure_was_drawn_as(painter: IllustratorAgent) -> None:
    # Given a tortoise and a cloud, one with a drawing of its own and one without
    cast = [{"name": "Tess", "look": "an olive tortoise with a high domed shell"},
            {"name": "Nimbus", "look": "a white cloud with rosy cheeks"}]
    # When the painter draws them
    reply = draw(painter, prompt="Tess and Nimbus at the snail race in the garden",
                 characters=cast, width=160, height=160, seed=1)
    # Then the reply names the drawing each got
    assert reply["drawn_as"] == {"tortoise": "turtle", "cloud": "cloud"}


def test_a_subject_is_drawn_in_the_picture(painter: IllustratorAgent) -> None:
    # Given the same village with and without a red clock in it
    base: dict[str, Any] = {"width": 192, "height": 192, "seed": 5}
    empty = picture(draw(painter, prompt="the town square of the village at noon", **base))
    clock = picture(draw(painter, prompt="Tick in the town square of the village at noon",
                         characters=[{"name": "Tick", "look": "a red clock"}], **base))
    # Then the clock's red body is there
    assert red_pixels(clock) > red_pixels(empty) + 150


@pytest.mark.parametrize(("plot", "hero"), [
    ("A little cloud is afraid to rain on the farm", "cloud"),
    ("A tortoise wants to win the great snail race", "turtle"),
    ("A parrot repeats a secret and the whole jungle hears it", "bird"),
    ("A clock in the town square forgets how to tick", "clock"),
    ("Leo and his grandpa plant an apple tree in the backyard", "grandpa"),
    ("An old tractor is sad because the farmer bought a new one", "vehicle"),
])
def test_the_storytellers_subject_is_drawn(painter: IllustratorAgent, plot: str,
                                            hero: str) -> None:
    # Given the embedded storyteller's outline for a plot
    outline = write_outline(plot=plot, themes=(), target_age="4-7", art_style="children_book",
                            chapters=3, seed=2)
    # When its cover is painted
    reply = draw(painter, prompt=outline["cover_prompt"], characters=outline["characters"],
                 width=128, height=128, seed=2)
    # Then the plot's subject has its drawing
    assert hero in reply["drawn_as"].values()


def test_a_characters_name_does_not_set_the_scene() -> None:
    # Given a dog called Rocket in a village
    cast = [Character("Rocket", "a golden dog with one floppy ear")]
    # When the scene is read / Then it is the village, not space
    assert read_scene("Rocket runs through the village", cast).setting == "village"
