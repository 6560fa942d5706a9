"""Running the operator as a service: leader election, health and readiness, metrics."""
