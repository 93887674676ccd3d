"""On-demand features: computed from stored features and the request, in training and serving."""

from shipyard.features import Feature, OnDemandFeatureView, RequestField, ValueType


def loan_to_income(features):
    """The requested loan as a share of yearly income (no pandas import needed here)."""
    return (features["loan_amount"] / features["income"]).to_frame("loan_to_income")


debt_ratios = OnDemandFeatureView.of(
    loan_to_income,
    name="debt_ratios",
    inputs=["customer_profile:income"],
    request_schema=[RequestField(name="loan_amount", dtype=ValueType.FLOAT64)],
    schema=[Feature(name="loan_to_income", dtype=ValueType.FLOAT64)],
    owner="risk-team",
)
