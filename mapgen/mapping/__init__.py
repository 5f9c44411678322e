"""The map machinery: :class:`~mapgen.mapping.map_function.MapFunction` (columns in, columns out, the
response store, re-asks), multi-round tasks, provider batch mode, provenance records, the reasoning split.

Imports the layers below it: :mod:`mapgen.core`, :mod:`mapgen.runtime`, :mod:`mapgen.llms`,
:mod:`mapgen.store` and :mod:`mapgen.tasks`.
"""
