"""The neurosim exception family.

Every error neurosim raises on purpose is a :class:`NeurosimError`. Each concrete error also
subclasses the builtin exception it resembles, so ``except ValueError`` keeps working for code
that does not know about neurosim.

Messages name the owner and the field, and say what was expected and what was got, e.g.
``"The 'p' parameter of NeuronCrash must be a float in [0, 1]. Got 1.5 instead."``
"""

from __future__ import annotations


class NeurosimError(Exception):
    """Base class of every error raised by neurosim."""


class ValidationError(NeurosimError, ValueError):
    """A parameter, array or field has a value that is not allowed."""


class ShapeError(ValidationError):
    """Arrays whose shapes do not fit together (weights that do not chain, data of the wrong width)."""


class FileFormatError(NeurosimError, ValueError):
    """A file exists but is malformed, of an unknown format, or holds something unsupported."""


class ReadLimitError(FileFormatError):
    """A file declares an array larger than neurosim reads (the limit of
    :func:`neurosim.io.guard.read_limit`; the message says how to raise it)."""


class UnsupportedLayerError(FileFormatError):
    """A model file holds a layer or activation neurosim cannot represent."""


class ProfileError(ValidationError):
    """A hardware profile is unknown, misspelt, incomplete or out of range."""


class MappingError(NeurosimError, ValueError):
    """A network cannot be placed on a chip profile (a per-core limit that cannot be split)."""


class MissingExtraError(NeurosimError, ImportError):
    """An optional dependency (an extra such as ``torch`` or ``lava``) is not installed."""


class UntrustedPickleError(NeurosimError, PermissionError):
    """Loading the file would run code from it, and the user did not say the file is trusted."""


class NeurosimFileNotFoundError(NeurosimError, FileNotFoundError):
    """A file named by the user does not exist."""


class BackendUnsupportedError(NeurosimError, NotImplementedError):
    """The chosen backend cannot run this network, fault model or estimator (the message says
    why; each backend lists its unsupported cases)."""


class ResultNotSavedError(NeurosimError, OSError):
    """A finished result could not be written; ``result`` holds it, so nothing is lost."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result

    def __reduce__(self):
        return type(self), (str(self), self.result)


class NeurosimWarning(UserWarning):
    """Something neurosim changed or chose on the user's behalf, said once (a dropped default
    fault process, a backend fallback)."""


def param_error(owner: str, name: str, expected: str, got: object,
                what: str = "parameter") -> ValidationError:
    """Build a :class:`ValidationError` with the house message template.

    Parameters
    ----------
    owner : str
        What the parameter belongs to, e.g. ``"NeuronCrash"`` or ``"neurosim simulate"``.
    name : str
        The parameter's name (or the command-line flag, ``--confidence``).
    expected : str
        What was expected, e.g. ``"a float in [0, 1]"``.
    got : object
        The value that was given.
    what : str
        ``"parameter"``, or ``"flag"`` for the command line.
    """
    return ValidationError(
        f"The '{name}' {what} of {owner} must be {expected}. Got {got!r} instead."
    )
