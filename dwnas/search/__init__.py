"""Hardware-aware search: latency tables and predictors, evolutionary search, accuracy predictor."""
