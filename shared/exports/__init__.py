"""A task as other tools read it: the neutral record (:mod:`.record`) that the api
serves and the storage service builds, and the writers that turn it into an Optuna
study (:mod:`.optuna_study`) or an MLflow experiment (:mod:`.mlflow_experiment`)."""
