"""The exceptions semlib raises on bad input.

Every problem a user can cause (a corrupt file, an odd image, a wrong gamma) raises
one of these, with a message that names the problem. They all derive from
``ValueError`` so that generic callers can catch them as such.
"""


class SemlibError(ValueError):
    """Base class of every error semlib raises on bad input."""


class FormatError(SemlibError):
    """A compressed ``.semc`` file is truncated, corrupted, foreign or inconsistent."""


class ImageError(SemlibError):
    """An input image cannot be read or is not usable (empty, not an image, too large)."""


class CheckpointError(SemlibError):
    """A checkpoint file is missing, not a checkpoint, or of another configuration."""
