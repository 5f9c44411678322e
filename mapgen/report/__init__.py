"""What a run did and would do, read from datasets and map functions: dry runs, totals, summaries,
cache explanations, dataset cards and the Hub push.

Imports the layers below it, up to :mod:`mapgen.mapping`; never :mod:`mapgen.integrations`, its sibling.
"""
