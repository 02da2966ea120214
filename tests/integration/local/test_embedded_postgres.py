from tests.support.sql import execute, one
from totes.local.embedded_postgres import EmbeddedPostgres


def test_each_test_gets_its_own_empty_database(new_database):
    first, second = new_database("a"), new_database("b")
    assert first != second
    execute(first, "CREATE TABLE only_here (x int)")
    assert one(first, "SELECT to_regclass('only_here')::text") == "only_here"
    assert one(second, "SELECT to_regclass('only_here')") is None


def test_ensure_database_is_idempotent(pg_server: EmbeddedPostgres):
    dsn = pg_server.ensure_database("t_idem")
    assert pg_server.ensure_database("t_idem") == dsn
    pg_server.drop_database("t_idem")
