"""kcache errors: one exception type carrying the C library's error code.

Every failing call of the C library returns a negative ``KC_E*`` code; the
binding raises :class:`Error` with that code, its symbolic name (from
``kc_err_name``) and the most detailed message the library has (the handle's
message, else ``kc_strerror``).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "Error",
    "NotFoundError",
    "ReadOnlyError",
    "SpecError",
    "ArgumentError",
    "LibraryNotFoundError",
    "KC_ENOTFOUND",
    "KC_EINVAL",
    "KC_EREADONLY",
    "KC_ESPEC",
    "KC_EEXPR",
]

KC_ENOTFOUND = -1
KC_EINVAL = -2
KC_EREADONLY = -8
KC_ESPEC = -22
KC_EEXPR = -23


class Error(Exception):
    """A failed kcache call.

    Attributes:
        code: the ``KC_E*`` code (a negative int).
        name: the code's symbolic name, e.g. ``"KC_ENOTFOUND"``.
        message: what went wrong, with the library's details.
    """

    code: int
    name: str
    message: str

    def __init__(self, code: int, message: str, name: Optional[str] = None) -> None:
        self.code = code
        self.name = name or "KC_E%d" % -code
        self.message = message
        super().__init__("%s: %s" % (self.name, message))


class NotFoundError(Error):
    """``KC_ENOTFOUND``: no such record, store or key."""


class ReadOnlyError(Error):
    """``KC_EREADONLY``: a write to a read-only store."""


class SpecError(Error):
    """``KC_ESPEC`` or ``KC_EEXPR``: an invalid kernel spec; the message names the field."""


class ArgumentError(Error, TypeError):
    """A launch argument that does not match the kernel's spec (``KC_EINVAL``)."""


class LibraryNotFoundError(Error):
    """libkcache.so could not be loaded; the message says where the binding looked."""


_BY_CODE: Dict[int, Type[Error]] = {
    KC_ENOTFOUND: NotFoundError,
    KC_EREADONLY: ReadOnlyError,
    KC_ESPEC: SpecError,
    KC_EEXPR: SpecError,
}


def error_class(code: int) -> Type[Error]:
    """The :class:`Error` subclass raised for ``code``."""
    return _BY_CODE.get(code, Error)
