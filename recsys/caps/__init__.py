"""Anti-disturbance frequency caps: policy, decisions, the reference engine and the Redis engine."""
