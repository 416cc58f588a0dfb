"""User-facing errors: each says what was expected, what was received, and what to do instead.

The CLI turns any :class:`RetrievalError` into a one-paragraph message and exit status 2; anything
else is a bug and keeps its traceback.
"""


class RetrievalError(Exception):
    """Base class for errors caused by input, configuration or on-disk state, not by a bug."""


class InputError(RetrievalError, ValueError):
    """Bad user input: a path, a table, a parameter or a query."""


class UnsupportedQueryError(InputError):
    """A well-formed query that this collection cannot answer: a modality it has no encoder for, a
    target it does not hold, a route it has no bridge for, vectors of another encoder's width. The
    server answers it 409 (the request conflicts with what the collection holds), other bad input 400."""


class UnknownNameError(RetrievalError, KeyError):
    """A name (encoder spec, backend, suite…) that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would repr() the message and add quotes
        return str(self.args[0]) if self.args else ""


class CollectionFormatError(RetrievalError):
    """A collection folder that this version cannot trust or read (foreign, newer, damaged)."""


class CollectionDamagedError(CollectionFormatError):
    """An opened collection whose files changed under it (a memory-mapped file cut short in place):
    it answers nothing more. The server answers it 503 for that collection alone."""


def expected(what: str, got: object, hint: str = "") -> str:
    """Format the standard 'expected X, got Y' message used across the package."""
    msg = f"expected {what}, got {got!r}" if not isinstance(got, str) else f"expected {what}, got {got}"
    return f"{msg}. {hint}".strip() if hint else msg
