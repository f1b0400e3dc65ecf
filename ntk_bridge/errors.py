"""One exception type for bad input: its message is one line saying what is wrong and the fix.

The CLI prints ``error: <message>`` and exits with status 2 instead of a traceback.
"""


class BridgeError(ValueError):
    """Bad input or an unusable setting. ``str(err)`` is one line: the problem and the fix."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def require(condition: object, message: str) -> None:
    """Raise :class:`BridgeError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise BridgeError(message)
