"""Errors the user can act on. The CLI prints them as one line and exits with code 2."""


class InputError(Exception):
    """Bad input from the user: a missing file, a wrong layout, an impossible option."""


class ImageTooLarge(InputError):
    """An image whose header claims more pixels than Pillow's decompression-bomb limit."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite (exit code 1)."""
