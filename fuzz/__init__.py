"""Fuzz targets for storymesh's codecs and broker core (see fuzz/README.md)."""
