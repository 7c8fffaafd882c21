"""Request and response bodies of the JSON API (XCreate, XUpdate, XPublic per resource)."""
