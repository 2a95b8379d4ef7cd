"""The fault soak: the market on anvil under saturated CPUs, with agents, oracles and the node
killed and restarted while real jobs run; it checks that no honest provider is slashed, no
payment is stuck and the books balance.

    gpumarket soak [--jobs N] [--concurrency K] [--busy N] [--seed S] [--kill-interval-s X]
                   [--out FILE] [--workdir DIR] [--json]

One module per concern:

    schedule.py  the fault schedule: which service is killed when, with which signal, how long
    busy.py      the busy loops that saturate the CPUs
    market.py    the market: the demo's deployment, 3 oracles and 3 honest providers as processes
    load.py      the load: the stream of jobs, played as their client and as a keeper
    faults.py    the fault injector: kills, restarts, the node restart, a supervisor's restarts
    reasons.py   why a job failed, quoted from the services' logs
    report.py    the report: outcomes, slashes, stuck payments, conservation, latency, faults
    run.py       one run, start to end
    cli.py       the command
"""
