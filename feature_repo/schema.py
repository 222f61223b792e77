"""Column names, table names and value vocabularies shared by every stage.

The feature repo, the training code, the service and the monitoring all import these
constants; no other module spells a column name as a string literal.
"""

from __future__ import annotations

# Raw Online Retail columns, as they appear in the CSV header and the .xlsx sheet.
RAW_INVOICE = "InvoiceNo"
RAW_STOCK_CODE = "StockCode"
RAW_DESCRIPTION = "Description"
RAW_QUANTITY = "Quantity"
RAW_INVOICE_DATE = "InvoiceDate"
RAW_UNIT_PRICE = "UnitPrice"
RAW_CUSTOMER_ID = "CustomerID"
RAW_COUNTRY = "Country"
RAW_COLUMNS: tuple[str, ...] = (
    RAW_INVOICE,
    RAW_STOCK_CODE,
    RAW_DESCRIPTION,
    RAW_QUANTITY,
    RAW_INVOICE_DATE,
    RAW_UNIT_PRICE,
    RAW_CUSTOMER_ID,
    RAW_COUNTRY,
)
RAW_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The shop's clock: the log's timestamps are local UK time without a zone.
SHOP_TIME_ZONE = "Europe/London"

# Join keys (Feast entity join keys) and event columns.
USER_ID = "user_id"
ITEM_ID = "item_id"
SESSION_ID = "session_id"
EVENT_TYPE = "event_type"
QUANTITY = "quantity"
PRICE = "price"
COUNTRY = "country"
EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
DAY = "day"

EVENT_COLUMNS: tuple[str, ...] = (
    USER_ID,
    SESSION_ID,
    ITEM_ID,
    EVENT_TYPE,
    QUANTITY,
    PRICE,
    COUNTRY,
    EVENT_TIMESTAMP,
)

# Event types kept as events. A cancellation nets against purchases; it is never a
# negative interaction.
PURCHASE = "purchase"
CANCELLATION = "cancellation"
EVENT_TYPES: tuple[str, ...] = (PURCHASE, CANCELLATION)

# Items table.
TITLE = "title"
PRICE_MEAN = "price_mean"
PRICE_MIN = "price_min"
PRICE_MAX = "price_max"
PRICE_MEDIAN = "price_median"
FIRST_SALE = "first_sale"
LAST_SALE = "last_sale"
N_PURCHASES = "n_purchases"

# Quarantine table: the raw row as text, where it came from, and why it was set aside.
SOURCE_FILE = "source_file"
SOURCE_LINE = "source_line"
REASON = "reason"
DETAIL = "detail"

# Reasons a row is set aside. Every quarantined row carries exactly one.
REASON_MALFORMED = "malformed_line"
REASON_MISSING_FIELD = "missing_field"
REASON_INVALID_DATE = "invalid_date"
REASON_INVALID_QUANTITY = "invalid_quantity"
REASON_INVALID_PRICE = "invalid_price"
REASON_INVALID_INVOICE = "invalid_invoice"
REASON_ADJUSTMENT = "accounting_adjustment"
REASON_NON_PRODUCT = "non_product"
REASON_DUPLICATE = "exact_duplicate"
REASON_STOCK_CORRECTION = "stock_correction"
REASON_CANCEL_POSITIVE = "cancellation_positive_quantity"
REASON_ZERO_PRICE = "zero_price"
REASON_INVALID_CUSTOMER = "invalid_customer"
REASONS: tuple[str, ...] = (
    REASON_MALFORMED,
    REASON_MISSING_FIELD,
    REASON_INVALID_DATE,
    REASON_INVALID_QUANTITY,
    REASON_INVALID_PRICE,
    REASON_INVALID_INVOICE,
    REASON_INVALID_CUSTOMER,
    REASON_ADJUSTMENT,
    REASON_NON_PRODUCT,
    REASON_DUPLICATE,
    REASON_STOCK_CORRECTION,
    REASON_CANCEL_POSITIVE,
    REASON_ZERO_PRICE,
)

# Stock codes that are fees, postage or admin lines rather than products.
NON_PRODUCT_CODES: frozenset[str] = frozenset(
    {
        "POST",
        "DOT",
        "C2",
        "M",
        "D",
        "S",
        "B",
        "BANK CHARGES",
        "AMAZONFEE",
        "CRUK",
        "PADS",
    }
)
NON_PRODUCT_PREFIXES: tuple[str, ...] = ("GIFT_",)

# Feast object names. Other packages reach views and services through the registry by
# these names instead of importing the definitions module.
USER_ENTITY = "user"
ITEM_ENTITY = "item"
SESSION_ENTITY = "session"
USER_VIEW = "user_features"
ITEM_VIEW = "item_features"
SESSION_VIEW = "session_features"
RANKER_SERVICE = "ranker_v1"
RANKER_SERVICES: tuple[str, ...] = (RANKER_SERVICE,)

# Feature names, one list per feature view. A feature view's schema is built from these,
# and the ranker reads whichever of them its feature service lists.
WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90)
USER_FEATURES: tuple[str, ...] = (
    "user_recency_days",
    "user_tenure_days",
    "user_frequency",
    "user_monetary",
    *(f"user_orders_{w}d" for w in WINDOWS_DAYS),
    *(f"user_units_{w}d" for w in WINDOWS_DAYS),
    *(f"user_spend_{w}d" for w in WINDOWS_DAYS),
    *(f"user_distinct_items_{w}d" for w in WINDOWS_DAYS),
    "user_cancel_rate",
    "user_country",
)
ITEM_FEATURES: tuple[str, ...] = (
    *(f"item_units_{w}d" for w in WINDOWS_DAYS),
    *(f"item_buyers_{w}d" for w in WINDOWS_DAYS),
    "item_price_mean",
    "item_price_min",
    "item_price_max",
    "item_cancel_rate",
    "item_days_since_first_sale",
)
SESSION_FEATURES: tuple[str, ...] = (
    "session_units",
    "session_value",
    "session_distinct_items",
    "session_hour",
    "session_weekday",
    "session_country",
)
# Features holding text rather than numbers (categorical for the ranker and for drift).
CATEGORICAL_FEATURES: frozenset[str] = frozenset({"user_country", "session_country"})

# The service's audit log: one JSON object a line, files ``audit/YYYY-MM-DD.jsonl`` under
# the data folder, one file per UTC day of the request's timestamp. The monitoring reads
# these keys.
AUDIT_REQUEST_ID = "request_id"
AUDIT_TIMESTAMP = "timestamp"  # ISO 8601 UTC; a replayed request carries its original time
AUDIT_USER = "user_hash"  # pseudonymised user id, null for guests
AUDIT_IS_GUEST = "is_guest"
AUDIT_MODEL_VERSION = "model_version"
AUDIT_ITEMS = "items"  # list of item_id, best first
AUDIT_SCORES = "scores"  # list of float, same order
AUDIT_SOURCES = "sources"  # list of list of retriever names, same order
AUDIT_FALLBACK = "fallback"  # null when personalised, else the reason
AUDIT_LATENCY_MS = "latency_ms"
AUDIT_K = "k"
AUDIT_ENDPOINT = "endpoint"
