"""The pipeline that ships to AWS: extract, transform and load, and what they share (the
lake, configuration, database connections, logs and metrics).

Each Lambda ships only the modules its handler imports (see scripts/build_lambdas.py).
"""
