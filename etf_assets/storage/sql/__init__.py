"""SQL of the storage stage, one statement per file."""

from etf_assets.storage.sql_files import sql_loader

load = sql_loader(__name__)
