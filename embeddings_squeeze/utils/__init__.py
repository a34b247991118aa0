"""Metrics, checkpoint loading, model comparison and run bookkeeping."""
