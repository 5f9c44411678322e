"""The shared vocabulary every layer speaks: prompts and images, requests and completions, the config
markers and fingerprint state, column types, prices and units, the review layout, paths, and secrets in
URLs (:mod:`mapgen.core.urls`).

Imports nothing of mapgen's but :mod:`mapgen.errors`; everything else may import it.
"""
