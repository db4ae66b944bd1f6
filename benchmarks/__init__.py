"""Performance benchmarks (not tests): each prints a ratio of two things measured side by side."""
