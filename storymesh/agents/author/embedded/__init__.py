"""The embedded storyteller: a whole book from a plot, offline, with no model weights.

plot.py reads the plot into a world, storyteller.py lays out the outline and writes the
chapters from templates.py's sentences and lexicon.py's word lists."""
