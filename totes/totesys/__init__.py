"""Our own ToteSys: its schema, a realistic seed and a clock-driven simulator of the business.

Used by the laptop run and the tests; never shipped to AWS.
"""
