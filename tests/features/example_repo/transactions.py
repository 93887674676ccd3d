"""Rolling transaction statistics per customer (computed daily)."""

from datetime import timedelta
from pathlib import Path

from shipyard.features import Feature, FeatureView, FileSource, ValueType

transaction_stats = FeatureView(
    name="transaction_stats",
    entities=["customer"],
    schema=[
        Feature(name="txn_count_7d", dtype=ValueType.INT64),
        Feature(name="txn_amount_7d", dtype=ValueType.FLOAT64),
        Feature(name="late_payments_90d", dtype=ValueType.INT64),
    ],
    source=FileSource(path=str(Path(__file__).parent / "data" / "transaction_stats.parquet")),
    ttl=timedelta(days=7),
    owner="risk-team",
)
