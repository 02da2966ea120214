"""The laptop runtime: the real state machine on moto, the embedded PostgreSQL, the ``totes``
command line and the benchmark. Never shipped to AWS."""
