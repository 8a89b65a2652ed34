"""chromoseg pipeline: the whole job (read images, detect, segment, stitch, measure, write), the
command-line interface, and the I/O shared by every stage."""

__version__ = "0.1.0"


class InputError(ValueError):
    """Bad input from the user (a file, folder or option): ``chromoseg`` prints the message as one
    line on stderr and exits with status 2, without a traceback. Stages subclass it."""
