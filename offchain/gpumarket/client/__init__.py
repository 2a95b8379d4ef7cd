"""The market's client: choose a provider, create a job, send its spec, follow it, fetch and check the result.

- choose: list_providers, choose_providers, choose_provider, JobRequirements, ProviderOffer (with its
  agent's health when probed)
- jobs: JobClient (create_job, wait_running, send_spec, follow, fetch_result, cancel, expire, claim),
  JobUpdate, AgentAnswer (what a job's agent says about it), ask_agents
- errors: the client's own ClientErrors, each with a `hint`
- cli: the `gpumarket client` command group

The provider agent's API it calls (ProviderApi, probe_agents, the spec, signed requests, the result
bundle, ProviderUnreachable / ProviderRefused) is gpumarket.agentapi, shared with the oracle.
"""
