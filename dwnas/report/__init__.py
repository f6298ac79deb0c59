"""Paper tables and figures, regenerated from the tracked runs (MLflow) and the stages' JSON."""
