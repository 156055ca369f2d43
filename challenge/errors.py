"""The one exception type the command line turns into a one-line message and a non-zero exit."""


class ChallengeError(ValueError):
    """A problem the user can fix: the message names what is wrong and how to fix it."""
