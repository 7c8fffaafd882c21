"""Package of the reference data CSV files that `fleet-server seed` loads."""
