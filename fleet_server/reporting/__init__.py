"""Procurement reporting: weekly periods and the 万元 figures of the weekly report."""
