"""The project's own error types. All derive from ValueError so callers can catch one thing."""

from __future__ import annotations


class LandmarksError(ValueError):
    """Base class for every error laplace-landmarks raises on bad user input."""


class FormatError(LandmarksError):
    """A landmark annotation file (.pts, JSON, XML, CSV) could not be parsed."""


class ImageError(LandmarksError):
    """An image could not be read, is corrupt, or is too large."""
