"""What can go wrong with an upload: each error's message is a sentence that tells the user what to do."""


class ImageError(ValueError):
    """An upload that can't be turned into a digit; the message tells the user what to do."""


class UnreadableImage(ImageError):
    pass


class ImageTooLarge(ImageError):
    pass


class NoDigitFound(ImageError):
    pass


class TooManyMarks(ImageError):
    pass
