# ruff: noqa: E501 (the hand-written CSV rows below are as long as COPY writes them)
"""A small ToteSys batch, written by hand the way PostgreSQL's COPY writes it, with the live
data's quirks (newlines and quotes in text, NULL vs empty string, 0-3 fractional digits).
The remodel, CSV-reading and transform tests all read it."""

from __future__ import annotations

T0 = "2022-11-03 14:20:49.962"

# Address 1: a newline in address_line_1, address_line_2 NULL. Address 2: address_line_2 an
# empty string, district NULL. Address 3: the apostrophe, quotes, a comma; legal address of
# two counterparties. Timestamps with 3, 2, 0 and 1 fractional digits.
ADDRESS_CSV = f'''\
address_id,address_line_1,address_line_2,district,city,postal_code,country,phone,created_at,last_updated
1,"6826 Herzog Via
Unit 3",,Avon,New Patienceburgh,28441,Turkey,1803 637401,{T0},{T0}
2,179 Alexie Cliffs,"",,Aliso Viejo,99305-7380,San Marino,9621 880720,2022-11-03 14:20:49.96,2022-11-03 14:20:49.96
3,"148 Sincere Fort, Flat 2","Apt. ""B""",Buckinghamshire,Lake Charles,89360,Democratic People's Republic of Korea,0730 783349,2022-11-03 14:20:49,2022-11-03 14:20:49.9
'''

DEPARTMENT_CSV = f"""\
department_id,department_name,location,manager,created_at,last_updated
1,Sales,Manchester,Richard Roma,{T0},{T0}
2,Purchasing,Manchester,Naomi Lapaglia,{T0},{T0}
4,Dispatch,Leds,Mark Hanna,{T0},{T0}
"""

STAFF_CSV = f"""\
staff_id,first_name,last_name,department_id,email_address,created_at,last_updated
1,Jeremie,Franey,2,jeremie.franey@terrifictotes.com,{T0},{T0}
2,Deron,Beier,4,deron.beier@terrifictotes.com,{T0},{T0}
3,Jeanette,Erdman,4,jeanette.erdman@terrifictotes.com,{T0},{T0}
"""

COUNTERPARTY_CSV = f"""\
counterparty_id,counterparty_legal_name,legal_address_id,commercial_contact,delivery_contact,created_at,last_updated
1,"Leannon, Predovic and Morar",3,Christy O'Hara,"Mrs. Lucy
Runolfsdottir",{T0},{T0}
2,Grant - Lakin,3,,Gilbert Thiel,{T0},{T0}
3,Fahey and Sons,1,Mr. Ross Reichel,Orlando Bahringer,{T0},{T0}
"""

CURRENCY_CSV = f"""\
currency_id,currency_code,created_at,last_updated
1,GBP,{T0},{T0}
2,USD,{T0},{T0}
3,EUR,{T0},{T0}
"""

DESIGN_CSV = f"""\
design_id,created_at,design_name,file_location,file_name,last_updated
8,{T0},Wooden,/usr,wooden-20220717-npgz.json,{T0}
51,{T0},Bronze,/private,bronze-20221024-4dds.json,{T0}
"""

PAYMENT_TYPE_CSV = f"""\
payment_type_id,payment_type_name,created_at,last_updated
1,SALES_RECEIPT,{T0},{T0}
3,PURCHASE_PAYMENT,{T0},{T0}
"""

# Order 3: delivery two years after the order; price 2.10 must stay 2.10.
SALES_ORDER_CSV = """\
sales_order_id,created_at,last_updated,design_id,staff_id,counterparty_id,units_sold,unit_price,currency_id,agreed_delivery_date,agreed_payment_date,agreed_delivery_location_id
2,2022-11-03 14:20:52.186,2022-11-03 14:20:52.186,8,2,3,42972,3.94,2,2022-11-07,2022-11-08,2
3,2022-11-03 14:20:52.1,2022-11-04 09:00:00,51,3,1,65839,2.10,3,2024-11-06,2022-11-03,3
"""

PURCHASE_ORDER_CSV = """\
purchase_order_id,created_at,last_updated,staff_id,counterparty_id,item_code,item_quantity,item_unit_price,currency_id,agreed_delivery_date,agreed_payment_date,agreed_delivery_location_id
1,2022-11-03 14:20:52.18,2022-11-03 14:20:52.18,1,2,ZDOI5EA,371,99999999.99,1,2022-11-09,2022-11-07,1
"""

TRANSACTION_CSV = """\
transaction_id,transaction_type,sales_order_id,purchase_order_id,created_at,last_updated
1,PURCHASE,,1,2022-11-03 14:20:52.18,2022-11-03 14:20:52.18
2,SALE,2,,2022-11-03 14:20:52.186,2022-11-03 14:20:52.186
3,SALE,3,,2022-11-03 14:20:52.1,2022-11-03 14:20:52.1
"""

PAYMENT_CSV = """\
payment_id,created_at,last_updated,transaction_id,counterparty_id,payment_amount,currency_id,payment_type_id,paid,payment_date,company_ac_number,counterparty_ac_number
2,2022-11-03 14:20:52.186,2022-11-03 14:20:52.186,2,3,169309.68,2,1,f,2022-11-08,34235316,31622269
3,2022-11-03 14:20:52.1,2022-11-03 14:20:52.1,3,1,138261.90,3,1,t,2022-11-03,60241237,85710338
1,2022-11-03 14:20:52.18,2022-11-03 14:20:52.18,1,2,0.01,1,3,f,2022-11-07,18489253,47503214
"""

BATCH_CSVS: dict[str, str] = {
    "address": ADDRESS_CSV,
    "counterparty": COUNTERPARTY_CSV,
    "currency": CURRENCY_CSV,
    "department": DEPARTMENT_CSV,
    "design": DESIGN_CSV,
    "staff": STAFF_CSV,
    "payment_type": PAYMENT_TYPE_CSV,
    "sales_order": SALES_ORDER_CSV,
    "purchase_order": PURCHASE_ORDER_CSV,
    "transaction": TRANSACTION_CSV,
    "payment": PAYMENT_CSV,
}
