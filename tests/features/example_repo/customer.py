"""The customer entity and their profile (refreshed yearly)."""

from datetime import timedelta
from pathlib import Path

from shipyard.features import Entity, Feature, FeatureView, FileSource, ValueType

DATA = Path(__file__).parent / "data"

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64,
                  description="A borrower.", owner="risk-team")

customer_profile = FeatureView(
    name="customer_profile",
    entities=["customer"],
    schema=[
        Feature(name="income", dtype=ValueType.FLOAT64, description="Yearly income."),
        Feature(name="age", dtype=ValueType.INT64),
        Feature(name="employment_years", dtype=ValueType.FLOAT64),
    ],
    source=FileSource(path=str(DATA / "customer_profile.parquet")),
    ttl=timedelta(days=365),
    owner="risk-team",
    description="Self-declared profile from the last application.",
    tags={"pii": "false"},
)
