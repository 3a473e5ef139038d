"""Speed and load figures: scripts that print numbers (``make benchmarks``), never tests."""
