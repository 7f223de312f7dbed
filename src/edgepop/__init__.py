"""edgepop: declarative bring-up and upkeep of a CDN point of presence."""

__version__ = "0.1.0"
