"""Integrations with other tools: Argilla (human review) and Ray Data (scale-out).

Each imports its tool lazily, so that importing mapgen never imports ``argilla`` or ``ray``.
"""
