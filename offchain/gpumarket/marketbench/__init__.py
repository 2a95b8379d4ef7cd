"""``gpumarket bench market``: the whole market on one machine under N concurrent jobs.

Anvil, the contracts, three real oracle services (each its own process) and simulated provider
agents (real HTTP, real challenges of the small cpu-small class by the real prover, but a job is a
timer), loaded with N jobs at once; what the oracles spend per job (CPU, memory), how long a
job's end takes to settle, the gas per settled job with and without batching, and the
heartbeats that came late or not at all. docs/ARCHITECTURE.md, "The market under load", says
how each cost grows with N and why.

One concern per module:

- :mod:`~gpumarket.marketbench.agent`: the simulated agents (one process, many providers);
- :mod:`~gpumarket.marketbench.harness`: bringing the market up (anvil, contracts, agents,
  oracles, providers registered and verified), and the oracles restarted per settlement mode;
- :mod:`~gpumarket.marketbench.load`: one load of N jobs, created to settled, and its figures;
- :mod:`~gpumarket.marketbench.measurements`: how each figure is measured and defined;
- :mod:`~gpumarket.marketbench.report`: bench/market.json and bench/market.png;
- :mod:`~gpumarket.marketbench.run`: every N and mode, in order; :mod:`~gpumarket.marketbench.cli`
  the command.
"""
