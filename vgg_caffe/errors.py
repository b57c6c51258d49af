"""The one exception type users see for their own mistakes.

Caffe stops with a CHECK failure naming the layer or file; we raise CaffeError with a message that
names the file, the line and column or the layer, and what was expected. Command-line entry points
catch it and print the message alone (no traceback from deep inside torch or protobuf).
"""


class CaffeError(Exception):
    """A problem with the user's input: a prototxt, a weights file, a database, a shape."""


def first_line(error, limit=None):
    """The first line of an exception's message (its type's name when it has none), cut to
    `limit` characters when given: what a one-line notice quotes of an error from a library."""
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line[:limit] if limit else line


def run_cli(main):
    """Run a command-line main(), turning CaffeError into a one-line message and exit status 1."""
    import sys

    try:
        return main()
    except CaffeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into `head` and the reader left: stop quietly, as Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
