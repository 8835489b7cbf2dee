"""User-facing errors.

Every problem caused by bad input (a config, a file, a path, a flag) is raised as a
:class:`DivtuneError`.  The CLI prints its message on one line and exits with code 2;
anything else is a bug and keeps its traceback.
"""


class DivtuneError(Exception):
    """Bad input: the message names the problem in one line."""

    exit_code = 2


class ConfigError(DivtuneError):
    """A preset, config file or config value is unknown, missing or malformed."""


class DataError(DivtuneError):
    """A dataset is empty, malformed or violates its schema."""


def one_line(exc: BaseException | str, limit: int | None = 300) -> str:
    """An exception (or text) squeezed to one line of at most ``limit`` characters, for a one-line error."""
    text = " ".join(str(exc).split())
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def short(value: object, limit: int = 80, *, use_repr: bool = True) -> str:
    """A value echoed in a message: ``repr`` (or ``str``) on one line of at most ``limit`` characters."""
    text = " ".join((repr(value) if use_repr else str(value)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
