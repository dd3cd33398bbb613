"""One exception type for mistakes a user can fix: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """Bad input, config or environment. The message names the file/line or key and what was expected."""
