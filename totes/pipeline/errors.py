"""Errors that mean a batch can never be delivered as it is.

Retrying cannot help (the lake is immutable: the same files fail the same way), so the
state machine does not retry them, and the alert says what to do instead: look at the
file named in the message, then either fix the cause or skip the batch with
``totes skip BATCH --reason ...``, after which the next extract delivers its rows again.
Row-level problems are not errors: those rows are set aside and the rest is delivered.
"""


class UndeliverableBatchError(Exception):
    """A batch whose files cannot be trusted or read; the message names batch and file."""
