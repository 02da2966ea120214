"""Terrific Totes data platform."""

import os

# polars' allocator (its own jemalloc) with one arena instead of four per core. Each arena
# keeps its own high-water mark, so with several the transform's peak memory crept up with
# the number of parts in a batch (scale 10 -> 100: +20%; with one arena: +8%, no slower).
# jemalloc reads this once, when polars is first loaded, which every polars import of ours
# follows: this package is imported first. A Lambda's own variables cannot set it (their
# names must start with a letter). A value already in the environment wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1")
