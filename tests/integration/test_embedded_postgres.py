import psycopg2

from totes.embedded_postgres import EmbeddedPostgres


def test_each_test_gets_its_own_empty_database(new_database):
    first, second = new_database("a"), new_database("b")
    assert first != second
    with psycopg2.connect(first) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE only_here (x int)")
    with psycopg2.connect(second) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('only_here')")
        assert cur.fetchone() == (None,)


def test_ensure_database_is_idempotent(pg_server: EmbeddedPostgres):
    dsn = pg_server.ensure_database("t_idem")
    assert pg_server.ensure_database("t_idem") == dsn
    pg_server.drop_database("t_idem")
