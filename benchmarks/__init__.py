"""The project's benchmarks: each one command, `python -m benchmarks.NAME`, that measures ours and a baseline in the
same run and prints the ratio; the latest results are kept in `benchmarks/RESULTS.md`."""
