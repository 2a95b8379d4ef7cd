"""On-chain side of the tooling: deployment parameters, deployment, the walkthrough.

`params` is pure Python; `deploy` and `walkthrough` import ape when called.
"""
