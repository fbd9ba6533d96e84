"""The model registry on MLflow: versions, aliases (champion, candidate), lineage and model
locations that `nervesr` follows (store)."""
