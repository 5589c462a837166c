"""Features: the two 30-row rolling features per symbol, into `features_table` and stage 2."""
