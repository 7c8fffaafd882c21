"""Placement planning: how many cabinets a school needs and where they go."""
