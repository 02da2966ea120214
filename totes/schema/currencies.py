"""ISO 4217 currency names (the standard's English entity names), for dim_currency.

ToteSys trades in GBP, USD and EUR; the other common codes are here so that a new currency
does not stop the pipeline. An unknown code is an error rather than a guessed name.
"""

from __future__ import annotations

ISO_4217_NAMES: dict[str, str] = {
    "AED": "UAE Dirham",
    "ARS": "Argentine Peso",
    "AUD": "Australian Dollar",
    "BGN": "Bulgarian Lev",
    "BRL": "Brazilian Real",
    "CAD": "Canadian Dollar",
    "CHF": "Swiss Franc",
    "CLP": "Chilean Peso",
    "CNY": "Yuan Renminbi",
    "COP": "Colombian Peso",
    "CZK": "Czech Koruna",
    "DKK": "Danish Krone",
    "EGP": "Egyptian Pound",
    "EUR": "Euro",
    "GBP": "Pound Sterling",
    "HKD": "Hong Kong Dollar",
    "HUF": "Forint",
    "IDR": "Rupiah",
    "ILS": "New Israeli Sheqel",
    "INR": "Indian Rupee",
    "ISK": "Iceland Krona",
    "JPY": "Yen",
    "KES": "Kenyan Shilling",
    "KRW": "Won",
    "KWD": "Kuwaiti Dinar",
    "MXN": "Mexican Peso",
    "MYR": "Malaysian Ringgit",
    "NGN": "Naira",
    "NOK": "Norwegian Krone",
    "NZD": "New Zealand Dollar",
    "PHP": "Philippine Peso",
    "PKR": "Pakistan Rupee",
    "PLN": "Zloty",
    "QAR": "Qatari Rial",
    "RON": "Romanian Leu",
    "SAR": "Saudi Riyal",
    "SEK": "Swedish Krona",
    "SGD": "Singapore Dollar",
    "THB": "Baht",
    "TRY": "Turkish Lira",
    "TWD": "New Taiwan Dollar",
    "UAH": "Hryvnia",
    "USD": "US Dollar",
    "VND": "Dong",
    "ZAR": "Rand",
}


class UnknownCurrencyError(ValueError):
    """A currency code with no ISO 4217 name in ``ISO_4217_NAMES``."""


def currency_name(code: str) -> str:
    try:
        return ISO_4217_NAMES[code]
    except KeyError:
        raise UnknownCurrencyError(
            f"currency code {code!r} has no ISO 4217 name in totes/schema/currencies.py: add it"
            " there and deploy, then touch the currency's row in ToteSys (a new last_updated):"
            " nothing else brings a row set aside for the code back"
        ) from None
