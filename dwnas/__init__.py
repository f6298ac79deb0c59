"""dwnas: reproducible Double-Win NAS (deep-to-shallow transformable networks)."""

__version__ = "0.1.0"
