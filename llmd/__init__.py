"""llmd: an LLM daemon for edge boxes."""

__version__ = "0.1.0"
