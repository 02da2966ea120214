"""Passwords never shown: key/value DSNs, URIs, secrets' JSON, and known literals."""

from __future__ import annotations

import pytest

from totes.pipeline.redact import MASK, password_of, redact, redact_dsn


@pytest.mark.parametrize(
    ("dsn", "password", "shown"),
    [
        ("host=db password=s3cret dbname=wh", "s3cret", "host=db password=*** dbname=wh"),
        ("host=db password = s3cret", "s3cret", "host=db password = ***"),
        (
            r"host='db' password='it\'s a s3cret\\' user='u'",
            "it's a s3cret\\",
            "host='db' password=*** user='u'",
        ),
        ("postgresql://reader:s3cret@db:5432/wh", "s3cret", "postgresql://reader:***@db:5432/wh"),
        ("postgres://:p%40ss@db/wh", "p@ss", "postgres://:***@db/wh"),
        (
            "postgresql://reader@db/wh?password=s3cret&sslmode=require",
            "s3cret",
            "postgresql://reader@db/wh?password=***",
        ),
        # Key/value, though the password looks like a URI's start.
        ("host=h password=ab://cd dbname=x", "ab://cd", "host=h password=*** dbname=x"),
        # libpq reads a backslash-escaped space as part of an unquoted value.
        (
            r"host=db password=Correct\ Horse dbname=wh",
            "Correct Horse",
            "host=db password=*** dbname=wh",
        ),
    ],
)
def test_a_dsn_is_shown_without_its_password(dsn, password, shown):
    assert password_of(dsn) == password
    assert redact_dsn(dsn) == shown


def test_an_empty_password_is_left_alone():
    # The embedded PostgreSQL's URIs carry an empty password: nothing to hide.
    assert (
        redact_dsn("postgresql://postgres:@/wh?host=/tmp/x")
        == "postgresql://postgres:@/wh?host=/tmp/x"
    )
    assert password_of("host=/tmp/x dbname=wh") is None


def test_passwords_are_found_anywhere_in_a_message():
    message = (
        'cannot use "host=db password=hunter22": see {"password": "hunter22", "host": "db"} '
        "and postgresql://u:hunter22@db/x"
    )
    assert "hunter22" not in redact(message)
    assert redact(message).count(MASK) == 3


def test_a_raw_at_sign_in_a_uri_password_hides_the_whole_password():
    assert "p@ss" not in redact("postgresql://u:p@ss@db/wh")
    assert "ss@db" not in redact("postgresql://u:p@ss@db/wh")


def test_known_literals_are_hidden_wherever_they_appear():
    text = 'missing "=" after "w0rd-s3cret" in connection info string'
    assert redact(text, "w0rd-s3cret") == 'missing "=" after "***" in connection info string'
    # Too short to hide without hiding ordinary words; the shapes above still catch it.
    assert redact("a bad day", "a") == "a bad day"


@pytest.mark.parametrize(
    "text",
    [
        "PGPASSWORD=hunter2xyz psql -h db",
        "settings: {'user': 'u', 'password': 'hunter2xyz'}",
        '{"Cause": "{\\"password\\": \\"hunter2xyz\\", \\"user\\": \\"u\\"}"}',
    ],
    ids=["environment", "python-dict", "json-within-json"],
)
def test_other_shapes_a_password_may_be_printed_in_are_hidden(text):
    shown = redact(text)
    assert "hunter2xyz" not in shown and MASK in shown
