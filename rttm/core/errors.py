"""The one exception type users see: a clear, single-line statement of what is wrong."""


class RttmError(Exception):
    """A failure the user can act on (bad configuration, unreachable server, bad input).

    The CLI prints it as one line, ``rttm: error: <message>``, and exits non-zero; messages
    are lower-case, say what and where, and never carry credentials.
    """
