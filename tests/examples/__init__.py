"""The README, the examples, the benchmarks and the built wheel, run as users run them."""
