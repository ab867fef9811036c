"""The package stage: a self-contained .mar made by the real torch-model-archiver."""
