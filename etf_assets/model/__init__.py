"""Model: the degree-2 volume regression, its evaluation and its MLflow run and registration."""
