# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Registry: provider hardware claims, price, endpoint, verification, jail
@custom:contract-name registry
@license GNU Affero General Public License v3.0 only
@notice A provider claims a GPU class and count and sets its price. It takes
        jobs only while a committee hardware report verifies that claim (see
        `verification`), while it is not jailed for repeated failures, and
        only as many GPUs at once as it claims: running jobs hold their GPUs
        until they settle or expire.
"""

from snekmate.auth import ownable
from modules import governance

uses: ownable
uses: governance


# @dev Most GPUs one provider may claim.
MAX_GPUS: constant(uint16) = 1_024
# @dev Highest price per GPU-second: prices are packed into 96 bits in `escrow`.
MAX_PRICE: constant(uint256) = 2**96 - 1
# @dev Longest endpoint URL.
MAX_ENDPOINT_LENGTH: constant(uint256) = 128
# @dev Failed jobs count towards jail within a window of this length that
# opens at a failure once the previous window has closed. Successes do not
# reset the count, so jobs a provider pays itself cannot wash failures away.
FAILURE_WINDOW: constant(uint256) = 7 * 86_400


# @dev What a provider claims and what the protocol knows of it. The claim
# version counts changes of class or GPU count, so a hardware report names
# the claim it measured (see `verification`).
struct Provider:
    gpu_class: uint16
    gpu_count: uint16
    claim_version: uint64
    price_per_gpu_second: uint256
    endpoint: String[MAX_ENDPOINT_LENGTH]
    verified_until: uint256
    recent_failures: uint256
    failure_window_start: uint256
    jailed: bool


# @dev provider => record; registered means gpu_count != 0.
providers: public(HashMap[address, Provider])
# @dev provider => GPUs held by its running jobs + 1, from registration on:
# accept and settle then rewrite a non-zero slot (5,000 gas) instead of
# filling an empty one (22,100) whenever a provider goes from idle to busy.
_gpus_in_use_plus_one: HashMap[address, uint256]


# @dev Emitted on registration.
event ProviderRegistered:
    provider: indexed(address)
    gpu_class: uint16
    gpu_count: uint16
    price_per_gpu_second: uint256
    endpoint: String[MAX_ENDPOINT_LENGTH]


# @dev Emitted when a provider changes its claim, price or endpoint.
event ProviderUpdated:
    provider: indexed(address)
    gpu_class: uint16
    gpu_count: uint16
    claim_version: uint64
    price_per_gpu_second: uint256
    endpoint: String[MAX_ENDPOINT_LENGTH]


# @dev Emitted when failures within a FAILURE_WINDOW jail a provider.
event ProviderJailed:
    provider: indexed(address)
    recent_failures: uint256


# @dev Emitted when governance releases a provider from jail.
event ProviderUnjailed:
    provider: indexed(address)


@deploy
def __init__():
    pass


@external
def register(gpu_class: uint16, gpu_count: uint16, price_per_gpu_second: uint256, endpoint: String[MAX_ENDPOINT_LENGTH]):
    """
    @notice Registers the caller as a provider. It can take jobs once a
            hardware report verifies the claim and it has staked.
    @param gpu_class A class governance lists.
    @param gpu_count GPUs offered, 1 .. 1,024.
    @param price_per_gpu_second Payment-token base units, 1 .. 2**96 - 1.
    @param endpoint The agent's URL, 1 .. 128 characters.
    """
    assert self.providers[msg.sender].gpu_count == 0, "registry: already registered"
    self._check_claim(gpu_class, gpu_count, price_per_gpu_second, endpoint)
    self.providers[msg.sender].gpu_class = gpu_class
    self.providers[msg.sender].gpu_count = gpu_count
    self.providers[msg.sender].price_per_gpu_second = price_per_gpu_second
    self.providers[msg.sender].endpoint = endpoint
    self._gpus_in_use_plus_one[msg.sender] = 1
    log ProviderRegistered(
        provider=msg.sender,
        gpu_class=gpu_class,
        gpu_count=gpu_count,
        price_per_gpu_second=price_per_gpu_second,
        endpoint=endpoint,
    )


@external
def update_provider(gpu_class: uint16, gpu_count: uint16, price_per_gpu_second: uint256, endpoint: String[MAX_ENDPOINT_LENGTH]):
    """
    @notice Changes the caller's claim, price or endpoint. A changed class or
            GPU count is a new claim version: it voids the current
            verification until a report of the new claim. The GPU count
            cannot drop below the GPUs running jobs hold (wait for them to
            end): the count is what the market sells. Running jobs keep the
            price they were accepted at.
    @param gpu_class A class governance lists.
    @param gpu_count GPUs offered, 1 .. 1,024.
    @param price_per_gpu_second Payment-token base units, 1 .. 2**96 - 1.
    @param endpoint The agent's URL, 1 .. 128 characters.
    """
    # Field by field, not the whole record: its endpoint alone is five slots.
    old_count: uint16 = self.providers[msg.sender].gpu_count
    assert old_count != 0, "registry: not registered"
    self._check_claim(gpu_class, gpu_count, price_per_gpu_second, endpoint)
    assert convert(gpu_count, uint256) >= self._gpus_in_use(msg.sender), "registry: fewer gpus than in use"
    claim_version: uint64 = self.providers[msg.sender].claim_version
    if self.providers[msg.sender].gpu_class != gpu_class or old_count != gpu_count:
        claim_version += 1
        self.providers[msg.sender].claim_version = claim_version
        self.providers[msg.sender].verified_until = 0
        self.providers[msg.sender].gpu_class = gpu_class
        self.providers[msg.sender].gpu_count = gpu_count
    self.providers[msg.sender].price_per_gpu_second = price_per_gpu_second
    self.providers[msg.sender].endpoint = endpoint
    log ProviderUpdated(
        provider=msg.sender,
        gpu_class=gpu_class,
        gpu_count=gpu_count,
        claim_version=claim_version,
        price_per_gpu_second=price_per_gpu_second,
        endpoint=endpoint,
    )


@external
def unjail(provider: address):
    """
    @notice Governance releases a jailed provider and clears its failures.
    @param provider A jailed provider.
    """
    ownable._check_owner()
    assert self.providers[provider].jailed, "registry: provider not jailed"
    self.providers[provider].jailed = False
    self.providers[provider].recent_failures = 0
    log ProviderUnjailed(provider=provider)


@external
@view
def is_verified(provider: address) -> bool:
    """
    @notice Whether a hardware report currently verifies `provider`'s claim.
    """
    return self.providers[provider].verified_until >= block.timestamp


@external
@view
def gpus_in_use(provider: address) -> uint256:
    """
    @notice GPUs that `provider`'s running jobs hold; a job is accepted only
            if it fits in gpu_count minus this.
    """
    return self._gpus_in_use(provider)


@internal
@view
def _check_claim(gpu_class: uint16, gpu_count: uint16, price_per_gpu_second: uint256, endpoint: String[MAX_ENDPOINT_LENGTH]):
    governance._require_class_exists(gpu_class)
    assert gpu_count != 0 and gpu_count <= MAX_GPUS, "registry: gpu count out of range"
    assert price_per_gpu_second != 0 and price_per_gpu_second <= MAX_PRICE, "registry: price out of range"
    assert len(endpoint) != 0, "registry: empty endpoint"


@internal
@view
def _require_registered(provider: address):
    assert self.providers[provider].gpu_count != 0, "registry: not registered"


@internal
def _take_gpus_at_price(provider: address, gpu_class: uint16, gpu_count: uint16, max_price: uint256) -> uint256:
    """
    @dev Reserves `gpu_count` of `provider`'s GPUs for a job of this class and
         price cap and returns its price; throws with the reason if it may not
         take the job now. Reads single fields, not the whole record (the
         endpoint spans five slots).
    """
    claimed_gpus: uint256 = convert(self.providers[provider].gpu_count, uint256)
    assert claimed_gpus != 0, "registry: not registered"
    assert not self.providers[provider].jailed, "registry: provider jailed"
    assert self.providers[provider].gpu_class == gpu_class, "registry: wrong gpu class"
    # Registered, so the slot holds in-use + 1 (at least 1).
    in_use_plus_one: uint256 = self._gpus_in_use_plus_one[provider]
    in_use_after: uint256 = in_use_plus_one - 1 + convert(gpu_count, uint256)
    assert in_use_after <= claimed_gpus, "registry: not enough free gpus"
    assert self.providers[provider].verified_until >= block.timestamp, "registry: hardware not verified"
    price: uint256 = self.providers[provider].price_per_gpu_second
    assert price <= max_price, "registry: price above job max"
    self._gpus_in_use_plus_one[provider] = in_use_after + 1
    return price


@internal
def _release_gpus(provider: address, gpu_count: uint256):
    """
    @dev A running job ended: its GPUs are free again. They were taken by
         `_take_gpus_at_price`, so the count cannot underflow.
    """
    self._gpus_in_use_plus_one[provider] -= gpu_count


@internal
@view
def _gpus_in_use(provider: address) -> uint256:
    stored: uint256 = self._gpus_in_use_plus_one[provider]
    if stored == 0:
        return 0
    return unsafe_sub(stored, 1)


@internal
def _set_verified_until(provider: address, verified_until: uint256):
    self.providers[provider].verified_until = verified_until


@internal
def _record_failure(provider: address):
    """
    @dev Counts a failed job in the provider's failure window and jails it
         when the window holds `jail_after_failures` failures. A window opens
         at a failure once the previous one has closed, and the count starts
         again there; completed jobs leave it alone.
    """
    failures: uint256 = self.providers[provider].recent_failures
    if block.timestamp >= self.providers[provider].failure_window_start + FAILURE_WINDOW:
        self.providers[provider].failure_window_start = block.timestamp
        failures = 0
    failures += 1
    self.providers[provider].recent_failures = failures
    if failures >= governance.jail_after_failures and not self.providers[provider].jailed:
        self.providers[provider].jailed = True
        log ProviderJailed(provider=provider, recent_failures=failures)
