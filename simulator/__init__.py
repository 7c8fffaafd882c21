"""Simulator of virtual cabinet boards and students for demos and tests."""
