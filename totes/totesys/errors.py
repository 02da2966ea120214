"""Errors of our own ToteSys (the simulator's database)."""


class ToteSysStateError(RuntimeError):
    """ToteSys is not in the state the operation needs (missing, half-built, already seeded)."""
