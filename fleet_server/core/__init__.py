"""Settings, database engine and security primitives shared by the whole server."""
