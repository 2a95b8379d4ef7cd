"""The market's client: choose a provider, create a job, send its spec, follow it, fetch and check the result.

- choose: list_providers, choose_providers, choose_provider, JobRequirements, ProviderOffer (with its
  agent's health when probed)
- jobs: JobClient (create_job, wait_running, send_spec, follow, fetch_result, cancel, expire, claim),
  JobUpdate, AgentAnswer (what a job's agent says about it), ask_agents
- http: ProviderApi, HttpTimeouts (the provider agent's HTTP API, bounded), probe_agents / AgentHealth
  (GET /health: up, GPUs free)
- errors: ClientError and its subclasses, each with a `hint`
- cli: the `gpumarket client` command group
"""
