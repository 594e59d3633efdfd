"""Errors a user can fix: printed as one line, exit code 2, nothing written."""


class UserError(Exception):
    """Bad input (config value, missing or corrupt data, unwritable folder). The message is the whole story."""
