"""Command-line subcommands of the segmenter stage (registered by pipeline.cli)."""


def register(groups) -> None:
    """Add this stage's subcommands to groups (see pipeline.cli)."""
