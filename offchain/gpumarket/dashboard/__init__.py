"""The market in a browser: a read-only web app that indexes the market's events into SQLite and
shows the market, its providers, its jobs and its oracles, live (``gpumarket dashboard``).

    from gpumarket.dashboard import Dashboard, DashboardConfig
    with Dashboard(DashboardConfig(rpc=url, deployment=record, oracles=urls, port=0)) as dashboard:
        print(dashboard.url)

One concern per module: ``index`` (the event follower writing SQLite) and ``queries`` (reading it),
``quorum`` (who signed a settlement), ``reads`` (the chain's live state), ``oracles`` (the
committee's /health and /metrics), ``units`` (amounts and times as text), ``chart`` (the
throughput chart, SVG), ``views`` (each page's values), ``app`` (routes, templates, static
files), ``service`` (the whole, started and stopped), ``cli`` (the command). docs/dashboard.md
is the guide.
"""

from gpumarket.dashboard.service import DEFAULT_PORT, Dashboard, DashboardConfig

__all__ = ["DEFAULT_PORT", "Dashboard", "DashboardConfig"]
