"""The platform simulator: the services of a scenario, producing all five topics."""
