"""Texts of the web pages, one module per area: key -> (Simplified Chinese, English).

Each area's module defines MESSAGES; ``fleet_server.web.i18n`` merges them and refuses a
key defined twice, so areas can be written side by side.
"""
