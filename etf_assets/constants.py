"""Names and limits shared across the pipeline: one place to read the contracts from."""

KAGGLE_DATASET = "jacksoncrow/stock-market-dataset"
ARCHIVE_NAME = "stock-market-dataset.zip"
META_FILE = "symbols_valid_meta.csv"
PRICE_DIRS = ("stocks", "etfs")
PRICE_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
META_HEADER = (
    "Nasdaq Traded,Symbol,Security Name,Listing Exchange,Market Category,ETF,Round Lot Size,"
    "Test Issue,Financial Status,CQS Symbol,NASDAQ Symbol,NextShares"
)

# Assets (asset name = DuckDB table name).
RAW_ZIP = "raw_zip"
SYMBOL_TABLE = "symbol_table"
PRICE_VOLUME_TABLE = "price_volume_table"
REJECTED_ROWS_TABLE = "rejected_rows"
FEATURES_TABLE = "features_table"
POLY_MODEL = "poly_model"

SYMBOLS_PARTITIONS = "symbols"
# DuckDB's own memory (it spills beyond it); keeps a full-scale features run under 8 GB in all.
DUCKDB_CONFIG = {"memory_limit": "6GB"}
WAREHOUSE_FILE = "warehouse.duckdb"
PRICES_STAGE = "parquet/prices"
FEATURES_STAGE = "parquet/features"

# Feature window: the 30 most recent rows including the current one.
WINDOW_ROWS = 30

# Extraction safety: refuse archives that unpack to more than this many times their packed size
# (CSV deflates about 3x; 100x is a zip bomb) or to more than this many bytes in all.
MAX_UNPACK_RATIO = 100
MAX_UNPACKED_BYTES = 20 * 1024**3
MAX_ARCHIVE_MEMBERS = 50_000

MODEL_NAME = "etf_volume_model"
MODEL_ALIAS = "champion"
EXPERIMENT_NAME = "etf_volume"
FEATURE_COLUMNS = ("vol_moving_avg", "adj_close_rolling_med")
TARGET_COLUMN = "volume"
