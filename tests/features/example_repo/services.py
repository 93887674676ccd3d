"""What the credit model consumes."""

from shipyard.features import FeatureService

credit_model_v1 = FeatureService(
    name="credit_model_v1",
    features=[
        "customer_profile",
        "transaction_stats:txn_count_7d",
        "transaction_stats:txn_amount_7d",
        "transaction_stats:late_payments_90d",
        "debt_ratios:loan_to_income",
    ],
    owner="risk-team",
    description="Inputs of the credit default model.",
)
