"""The provider agent: takes jobs, proves its hardware, runs jobs, serves results.

Modules, one concern each (the job spec, the result bundle, signed requests and the agent's
errors are the API the agent shares with its callers: gpumarket.agentapi):

- ``jobsource``: the ``JobSource`` protocol (a job's on-chain client, provider, state, spec_hash).
- ``runner``: runs one job in its own directory and process group, with limits and metering.
- ``store``: SQLite state (jobs, nonces, challenges) and restart recovery.
- ``agent``: ``ProviderAgent``, every API operation's checks and effects.
- ``api``: ``ProviderServer``, the HTTP transport.
- ``cli``: ``gpumarket provider serve-api``.

Documents: docs/job-spec.md (the spec and the result bundle), docs/provider-api.md (the API).
"""
