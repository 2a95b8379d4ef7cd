"""The provider agent: takes jobs, proves its hardware, runs jobs, serves results.

Modules, one concern each:

- ``spec``: the job spec (versioned JSON), its canonical encoding and ``spec_hash``.
- ``auth``: signed client requests (EIP-191), ``sign_request`` for clients, ``RequestVerifier``.
- ``jobsource``: the ``JobSource`` protocol (a job's on-chain client, provider, state, spec_hash).
- ``runner``: runs one job in its own directory and process group, with limits and metering.
- ``result``: the result bundle and ``result_hash``; ``ResultBundle.verify`` for clients.
- ``store``: SQLite state (jobs, nonces, challenges) and restart recovery.
- ``agent``: ``ProviderAgent``, every API operation's checks and effects.
- ``api``: ``ProviderServer``, the HTTP transport.
- ``cli``: ``gpumarket provider serve-api``.

Documents: docs/job-spec.md (the spec and the result bundle), docs/provider-api.md (the API).
"""
