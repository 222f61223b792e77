"""Benchmarks run by ``make bench``: each module measures one stage next to a baseline
run in the same process and reports the ratio."""
