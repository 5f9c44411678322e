__version__ = "0.1.0"

# Bumped whenever a release changes what mapgen writes for the same inputs (columns, parsing, prompt
# rendering). It is part of every callable's fingerprint, so old `datasets` caches are not reused.
OUTPUT_FORMAT_VERSION = 6
