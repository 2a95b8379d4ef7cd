"""Values the tests share with the contract (kept in one place)."""

# committee.vy's bound, as gpumarket.chain.limits holds it (tests/chain/test_limits.py checks it).
from gpumarket.chain.limits import MAX_MEMBERS as MAX_MEMBERS

DAY = 86_400
HOUR = 3_600
BPS = 10_000
TOKEN = 10**18

# Job states, as escrow.vy numbers them.
OPEN, RUNNING, COMPLETED, FAILED, CANCELLED, EXPIRED = 1, 2, 3, 4, 5, 6
TERMINAL_STATES = (COMPLETED, FAILED, CANCELLED, EXPIRED)

# GPU classes the test deployment lists: id -> throughput floor per GPU (GOPS).
CPU_DEV = 1
H100 = 2
CLASS_FLOORS = {CPU_DEV: 10, H100: 500_000}

MIN_STAKE = 1_000 * TOKEN

# GpuMarket's last constructor arguments for a market without companions: no BatchSettler and
# no OracleBonds blueprint (the bond amount and delay are then unused).
NO_COMPANIONS = ("0x0000000000000000000000000000000000000000", "0x0000000000000000000000000000000000000000", 0, DAY)
PRICE = 10**12  # payment-token units per GPU-second
