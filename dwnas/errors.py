"""The one exception type the CLI turns into a clean message and a non-zero exit."""


class DwnasError(Exception):
    """A user-facing error: bad input, inconsistent params, a missing file.

    The message must name the offending thing (a path, a params key) so the user can fix it
    without reading a traceback.
    """
