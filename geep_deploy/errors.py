"""One error hierarchy for the whole product.

Every error a user can act on is a `GeepError`; messages follow
``"<component> | what failed. Expected X, got Y. Try Z."``. `GeepInternalError` is for bugs
and deliberately does not subclass `GeepError`, so that user-facing handlers never swallow it.
"""

from __future__ import annotations


class GeepError(Exception):
    """Base class of every error a user can act on."""


class DataError(GeepError):
    """A data file or an input text is missing, malformed or of the wrong type."""


class CheckpointError(GeepError):
    """A checkpoint file is missing, truncated, foreign or of a newer format version."""


class ConfigError(GeepError):
    """An option or a backbone configuration is invalid."""


class ExportError(GeepError):
    """An export could not be written or an export directory is invalid."""


class ArtifactError(ExportError):
    """An exported artifact is missing, corrupted (checksum) or of an unsupported version."""


class ValidationError(ExportError):
    """An exported graph or engine does not agree with the reference model."""


class ShapeMismatch(ValidationError):
    """Output shapes differ between the export and the reference."""


class ToleranceExceeded(ValidationError):
    """Output values differ by more than the allowed tolerance."""


class EngineBuildError(GeepError):
    """A backend engine (TensorRT plan, ONNX Runtime session) could not be built or loaded."""


class EngineRunError(GeepError):
    """A loaded engine failed while running a batch (shape outside its profile, a failed launch)."""


class BackendUnavailable(GeepError, ImportError):
    """An optional backend library is not installed; the message names the pip command."""


class TableError(GeepError):
    """An exit table file is invalid, or a key cannot be stored."""


class TableCapacityError(TableError):
    """The exit hash table is full; it never grows silently."""


class GeepInternalError(Exception):
    """A bug in geep-deploy itself (not a user error). Please report it."""
