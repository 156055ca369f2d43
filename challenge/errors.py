"""The two kinds of fault the kit tells apart: the user's (ChallengeError) and the participant's (Verdict).

A ChallengeError is turned by the command line into one line and exit status 2; a Verdict becomes
a submission's `status` and one-line `message` in result.json (exit status 1), never a traceback.
"""


class ChallengeError(ValueError):
    """A problem the user can fix: the message names what is wrong and how to fix it."""


class Verdict(Exception):
    """A participant's fault: a status and a one-line reason in result.json, never a traceback."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message
