"""Training job: features -> fitted model -> time-split evaluation -> MLflow run -> registered model."""
