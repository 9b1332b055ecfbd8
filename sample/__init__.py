"""The bundled sample corpus (``sample.parquet``) and the script that makes it."""
