"""An independent statement of what the warehouse should hold, written as SQL over ToteSys.

Deliberately not derived from the transform: if the two disagree, one of them is wrong.
"""

from __future__ import annotations

from tests.support.sql import query

CURRENT_STATE_FROM_SOURCE = {
    "dim_staff": """SELECT s.staff_id, s.first_name, s.last_name, d.department_name, d.location,
                           s.email_address
                      FROM staff s JOIN department d ON d.department_id = s.department_id""",
    "dim_location": """SELECT address_id, address_line_1, address_line_2, district, city,
                              postal_code, country, phone FROM address""",
    "dim_currency": """SELECT currency_id, currency_code,
                              CASE currency_code WHEN 'GBP' THEN 'Pound Sterling'
                                   WHEN 'USD' THEN 'US Dollar' WHEN 'EUR' THEN 'Euro'
                                   WHEN 'CHF' THEN 'Swiss Franc' END
                         FROM currency""",
    "dim_design": "SELECT design_id, design_name, file_location, file_name FROM design",
    "dim_counterparty": """SELECT c.counterparty_id, c.counterparty_legal_name, a.address_line_1,
                                  a.address_line_2, a.district, a.city, a.postal_code, a.country,
                                  a.phone
                             FROM counterparty c JOIN address a
                               ON a.address_id = c.legal_address_id""",
    "dim_payment_type": "SELECT payment_type_id, payment_type_name::text FROM payment_type",
    "dim_transaction": """SELECT transaction_id, transaction_type::text, sales_order_id,
                                 purchase_order_id FROM transaction""",
    "fact_sales_order": """SELECT sales_order_id, created_at::date, created_at::time,
                                  last_updated::date, last_updated::time, staff_id,
                                  counterparty_id, units_sold, unit_price, currency_id, design_id,
                                  agreed_payment_date::date, agreed_delivery_date::date,
                                  agreed_delivery_location_id FROM sales_order""",
    "fact_purchase_order": """SELECT purchase_order_id, created_at::date, created_at::time,
                                     last_updated::date, last_updated::time, staff_id,
                                     counterparty_id, item_code, item_quantity, item_unit_price,
                                     currency_id, agreed_delivery_date::date,
                                     agreed_payment_date::date, agreed_delivery_location_id
                                FROM purchase_order""",
    "fact_payment": """SELECT payment_id, created_at::date, created_at::time, last_updated::date,
                              last_updated::time, transaction_id, counterparty_id, payment_amount,
                              currency_id, payment_type_id, paid, payment_date::date
                         FROM payment""",
}

# The warehouse side: the published columns of the rows that are current: not marked
# deleted, and for facts the latest version of each id (the latest batch, then the latest
# last_updated: the warehouse's <fact>_current views).
PUBLISHED_COLUMNS = {
    "dim_staff": "staff_id, first_name, last_name, department_name, location, email_address",
    "dim_location": "location_id, address_line_1, address_line_2, district, city, postal_code,"
    " country, phone",
    "dim_currency": "currency_id, currency_code, currency_name",
    "dim_design": "design_id, design_name, file_location, file_name",
    "dim_counterparty": "counterparty_id, counterparty_legal_name,"
    " counterparty_legal_address_line_1, counterparty_legal_address_line_2,"
    " counterparty_legal_district, counterparty_legal_city, counterparty_legal_postal_code,"
    " counterparty_legal_country, counterparty_legal_phone_number",
    "dim_payment_type": "payment_type_id, payment_type_name",
    "dim_transaction": "transaction_id, transaction_type, sales_order_id, purchase_order_id",
    "fact_sales_order": "sales_order_id, created_date, created_time, last_updated_date,"
    " last_updated_time, sales_staff_id, counterparty_id, units_sold, unit_price, currency_id,"
    " design_id, agreed_payment_date, agreed_delivery_date, agreed_delivery_location_id",
    "fact_purchase_order": "purchase_order_id, created_date, created_time, last_updated_date,"
    " last_updated_time, staff_id, counterparty_id, item_code, item_quantity, item_unit_price,"
    " currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id",
    "fact_payment": "payment_id, created_date, created_time, last_updated_date,"
    " last_updated_time, transaction_id, counterparty_id, payment_amount, currency_id,"
    " payment_type_id, paid, payment_date",
}
_RECORD_IDS = {
    "fact_sales_order": "sales_record_id",
    "fact_purchase_order": "purchase_record_id",
    "fact_payment": "payment_record_id",
}


def _current(table: str) -> str:
    columns = PUBLISHED_COLUMNS[table]
    key = columns.split(",", 1)[0]
    not_deleted = (
        f"NOT EXISTS (SELECT 1 FROM etl_deleted_row r WHERE r.table_name = '{table}'"
        f" AND r.id = t.{key})"
    )
    if table not in _RECORD_IDS:
        return f"SELECT {columns} FROM {table} t WHERE {not_deleted}"
    return (
        f"SELECT DISTINCT ON ({key}) {columns} FROM {table} t WHERE {not_deleted}"
        f" ORDER BY {key}, batch_id DESC, last_updated_date DESC, last_updated_time DESC,"
        f" {_RECORD_IDS[table]} DESC"
    )


CURRENT_STATE_IN_WAREHOUSE = {table: _current(table) for table in PUBLISHED_COLUMNS}

# Every date a fact references, with the calendar fields dim_date must carry for it.
DATES_FROM_SOURCE = """
WITH dates AS (
    SELECT created_at::date AS d FROM sales_order UNION SELECT last_updated::date FROM sales_order
    UNION SELECT agreed_payment_date::date FROM sales_order
    UNION SELECT agreed_delivery_date::date FROM sales_order
    UNION SELECT created_at::date FROM purchase_order
    UNION SELECT last_updated::date FROM purchase_order
    UNION SELECT agreed_payment_date::date FROM purchase_order
    UNION SELECT agreed_delivery_date::date FROM purchase_order
    UNION SELECT created_at::date FROM payment UNION SELECT last_updated::date FROM payment
    UNION SELECT payment_date::date FROM payment
)
SELECT d, extract(year FROM d)::int, extract(month FROM d)::int, extract(day FROM d)::int,
       extract(isodow FROM d)::int, to_char(d, 'FMDay'), to_char(d, 'FMMonth'),
       extract(quarter FROM d)::int
  FROM dates
"""
DATES_IN_WAREHOUSE = """SELECT date_id, year, month, day, day_of_week, day_name, month_name,
                               quarter FROM dim_date"""


def rows(dsn: str, statement: str) -> set[tuple]:
    return set(query(dsn, statement))


def differences(source_dsn: str, warehouse_dsn: str) -> dict[str, tuple[set, set]]:
    """Per table, (rows missing from the warehouse, rows the warehouse should not have)."""
    found = {}
    for table, statement in CURRENT_STATE_FROM_SOURCE.items():
        expected = rows(source_dsn, statement)
        actual = rows(warehouse_dsn, CURRENT_STATE_IN_WAREHOUSE[table])
        if expected != actual:
            found[table] = (expected - actual, actual - expected)
    expected_dates = rows(source_dsn, DATES_FROM_SOURCE)
    missing_dates = expected_dates - rows(warehouse_dsn, DATES_IN_WAREHOUSE)
    if missing_dates:
        found["dim_date"] = (missing_dates, set())
    return found
