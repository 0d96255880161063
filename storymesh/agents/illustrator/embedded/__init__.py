"""The embedded painter: a procedural Pillow illustrator that needs no model weights.

painter.py is the entry (`render_png`); scene.py reads the prompt, landscape.py, props.py
and figures.py paint on canvas.py, finish.py gives the art style's texture."""

from storymesh.agents.illustrator.embedded.painter import render_png

__all__ = ["render_png"]
