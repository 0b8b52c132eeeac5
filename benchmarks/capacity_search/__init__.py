"""Capacity search validation: the search's answers against the simulator's true capacity, computed from its latency
model alone (`model`); the saturation test on steps at 2× and 0.7× that capacity; and one search on the vLLM engine
with the embedded model (`runs`). `python -m benchmarks.capacity_search` runs it all and writes its section of
`benchmarks/RESULTS.md` (`report`)."""
