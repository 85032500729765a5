"""User-facing errors: one line on stderr and exit code 2 from the CLI."""


class DeployError(Exception):
    """A problem with the user's input (file, flag, data), reported in one line.

    The CLI prints ``lava-deploy: error: <message>`` and exits with code 2; no
    traceback is shown because nothing in the program is at fault.
    """
