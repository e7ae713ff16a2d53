"""Performance modeling of sparse and quantized kernels: measurement harness, sweeps,
results store, target catalog, roofline and learned models, queries and the CLI."""

__all__: list[str] = []
