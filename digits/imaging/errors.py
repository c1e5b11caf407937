"""What can go wrong with an upload: each error's message is a sentence that tells the user what to do."""

from digits.i18n.message import Said


class ImageError(Said, ValueError):
    """An upload that can't be turned into a digit; the message tells the user what to do, in their language."""


class UnreadableImage(ImageError):
    pass


class ImageTooLarge(ImageError):
    pass


class NoDigitFound(ImageError):
    pass


class TooManyMarks(ImageError):
    pass
