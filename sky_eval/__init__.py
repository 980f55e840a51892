"""sky_eval: benchmarks, generation backends and honest metrics (work in progress)."""
