"""chromoseg pipeline: the whole job (read images, detect, segment, stitch, measure, write), the
command-line interface, and the I/O shared by every stage."""

__version__ = "0.1.0"
