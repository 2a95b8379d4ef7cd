"""The demo: the whole market's story on a local chain, judged against the protocol's rules.

    gpumarket demo [--json]      in this process, on the embedded py-evm chain
    gpumarket devnet [--json]    on anvil, every oracle, provider and the client a process

One module per concern:

    story.py      the story (deploy, fund, providers, oracles, client) over a Launcher
    launcher.py   the seam: what a launcher starts, and the setups it gets
    inprocess.py  InProcessLauncher (threads, the embedded chain)
    devnet.py     ProcessLauncher (anvil, the `gpumarket` command line per service)
    client.py     the client's part (in process, or devnet's `gpumarket demo-client`)
    workloads.py  the jobs: small real computations and the checks of their results
    rules.py      what a settled job moves, by the protocol's rules
    ledger.py     holdings per account, and the conservation check
    judge.py      what happened against the rules -> DemoResult (deviations)
    narrator.py   progress: the market's events as they happen
    summary.py    the closing table
    cli.py        the commands
"""
