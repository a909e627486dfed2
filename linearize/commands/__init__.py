"""One module per CLI subcommand: add_arguments(parser) and run(args) -> exit status."""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""
