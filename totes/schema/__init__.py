"""What the tables look like: ToteSys's source tables and the warehouse's star schemas.

Pure declarations (no database driver): every stage, the DDL, the tests and the docs read
them, so each table's shape is written down once.
"""
