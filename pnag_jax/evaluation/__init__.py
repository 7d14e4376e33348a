"""The paper's evaluation protocols (DESIGN §6): V/U/N, speed, SCC ablation, quality.

Each protocol writes a JSON report and a PNG plot under an output directory; the
`pnag eval <protocol>` subcommands are thin wrappers over the `run` functions here.
"""
