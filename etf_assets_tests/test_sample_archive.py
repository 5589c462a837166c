"""The generated archive: deterministic, shaped like Kaggle's, with realistic prices."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd

from etf_assets.ingest.sample_archive import SampleSpec, generate_folder, generate_zip, main

PRICE_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_arguments_give_identical_archives(tmp_path: Path) -> None:
    spec = SampleSpec(stocks=12, etfs=4, rows=200, seed=3)
    generate_zip(spec, tmp_path / "a.zip")
    generate_zip(spec, tmp_path / "b.zip")
    generate_zip(SampleSpec(stocks=12, etfs=4, rows=200, seed=4), tmp_path / "c.zip")
    assert digest(tmp_path / "a.zip") == digest(tmp_path / "b.zip")
    assert digest(tmp_path / "a.zip") != digest(tmp_path / "c.zip")


def test_clean_archive_has_the_requested_shape_and_sane_prices(tmp_path: Path) -> None:
    main(["--stocks", "7", "--etfs", "3", "--rows", "400", "--no-quirks", "--out", str(tmp_path)])
    stocks = sorted((tmp_path / "stocks").glob("*.csv"))
    etfs = sorted((tmp_path / "etfs").glob("*.csv"))
    assert (len(stocks), len(etfs)) == (7, 3)
    with open(tmp_path / "symbols_valid_meta.csv", newline="") as fh:
        meta = list(csv.DictReader(fh))
    assert sorted(r["NASDAQ Symbol"] for r in meta) == sorted(p.stem for p in stocks + etfs)
    assert {r["NASDAQ Symbol"] for r in meta if r["ETF"] == "Y"} == {p.stem for p in etfs}

    frames = []
    for path in stocks + etfs:
        assert path.read_text().splitlines()[0] == PRICE_HEADER
        frame = pd.read_csv(path, keep_default_na=False)
        assert frame["Date"].is_monotonic_increasing and frame["Date"].is_unique
        frames.append(frame)
    prices = pd.concat(frames)
    assert 0.25 * 400 * 10 <= len(prices) <= 1.75 * 400 * 10
    assert (prices["Low"] <= prices[["Open", "Close"]].min(axis=1)).all()
    assert (prices["High"] >= prices[["Open", "Close"]].max(axis=1)).all()
    assert (prices["Adj Close"] <= prices["Close"]).all()
    assert (prices["Low"] > 0).all()
    assert prices["Volume"].dtype == "int64" and (prices["Volume"] >= 0).all()


def test_quirks_are_on_by_default(tmp_path: Path) -> None:
    quirks = generate_folder(SampleSpec(), tmp_path)
    stems = {p.stem for p in tmp_path.glob("*/*.csv")}
    assert {"NA", "LGF.B", "CARR#", "AGM-A", "UTX", "UTX#"} <= stems
    with open(tmp_path / "symbols_valid_meta.csv", newline="") as fh:
        meta = {r["NASDAQ Symbol"]: r for r in csv.DictReader(fh)}
    assert meta["UTX#"]["Symbol"] == meta["UTX"]["Symbol"] == "UTX"
    assert quirks.meta_without_file in meta and quirks.meta_without_file not in stems
    assert quirks.file_without_meta in stems and quirks.file_without_meta not in meta
    assert (tmp_path / "etfs" / f"{quirks.header_only}.csv").read_text() == PRICE_HEADER + "\n"
    blank_file = (tmp_path / "stocks" / f"{quirks.blank_rows}.csv").read_text().splitlines()
    assert sum(line.endswith(",,,,,,") for line in blank_file) == 2
    assert all(line.endswith(".0") for line in blank_file[1:] if not line.endswith(",,,,,,"))
    total = sum(len(p.read_bytes().splitlines()) - 1 for p in tmp_path.glob("*/*.csv"))
    assert 40_000 <= total <= 60_000  # "about 50 symbols, 50k rows"
