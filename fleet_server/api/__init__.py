"""HTTP layer: dependencies, error responses and the routes of the JSON API."""
