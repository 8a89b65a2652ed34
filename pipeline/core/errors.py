"""The errors a user sees as one line (``chromoseg`` prints the message on stderr and exits with
status 2, without a traceback)."""


class InputError(ValueError):
    """Bad input from the user: a file, folder or option."""


class DatasetError(InputError):
    """A dataset folder that cannot be used for training or evaluation."""


class ModelError(InputError):
    """A model folder that cannot be loaded or does not fit what it is used for."""


class ConfigError(InputError):
    """A config file that cannot be used."""


def one_line(error: BaseException) -> str:
    """An exception as one line for stderr and run.json."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, InputError) else f"{type(error).__name__}: {text}"
