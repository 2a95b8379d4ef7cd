"""The provider agent's API as the agent and its callers (the client, the oracle's job loop) share it.

Both sides of the wire import from here, so neither role imports the other:

- ``spec``: the job spec (versioned JSON), its canonical encoding and ``spec_hash``.
- ``result``: the result bundle and ``result_hash``; ``ResultBundle.verify`` for callers.
- ``auth``: signed client requests (EIP-191): ``sign_request`` for callers, ``RequestVerifier`` for the agent.
- ``client``: ``ProviderApi``, the bounded HTTP client of the API; ``probe_agents`` / ``AgentHealth`` (GET /health).
- ``errors``: ``AgentError`` (the agent's refusal) and the caller's ``ProviderUnreachable`` / ``ProviderRefused``.

Documents: docs/job-spec.md (the spec and the result bundle), docs/provider-api.md (the API).
"""
