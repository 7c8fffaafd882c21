"""Domain logic of the fleet server: keyword-only functions that take a Session.

Functions whose result depends on who calls them also take an Actor (services.access).
"""
