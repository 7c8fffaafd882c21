"""Fleet server that manages all cabinets from one place."""
