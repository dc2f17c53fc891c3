"""Raw tables (data contract) -> validated frames -> cardholder/item features and interactions."""
