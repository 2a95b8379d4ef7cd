"""OCI containers: image references, the container engine (Podman), cgroup readings, the
engine's log files, and the local image that tests and the devnet build.

- ``reference``: an image reference pinned by digest (``name@sha256:<hex>``), parsed and checked.
- ``engine``: the Podman command line, wrapped (run, inspect, kill, remove, list by label, pull).
- ``cgroup``: a container's CPU time and memory from its cgroup (v1 or v2).
- ``logs``: the engine's ``k8s-file`` log turned back into stdout and stderr.
- ``local_image``: a Python image built from Debian's packages, for tests and the devnet.
"""
