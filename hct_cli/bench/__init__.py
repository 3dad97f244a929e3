"""Benchmarks: the trial runner, synthetic workloads and the Gantt chart."""
