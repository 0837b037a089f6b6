"""The one exception type users see."""


class TxmergeError(ValueError):
    """Bad input or a missing resource: the message is one sentence naming the problem and the fix."""
