# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Registry: provider hardware claims, price, endpoint, verification, jail
@custom:contract-name registry
@license GNU Affero General Public License v3.0 only
@notice A provider claims a GPU class and count and sets its price. It takes
        jobs only while a committee hardware report verifies that claim (see
        `verification`) and while it is not jailed for repeated failures.
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


# @dev What a provider claims and what the protocol knows of it.
struct Provider:
    gpu_class: uint16
    gpu_count: uint16
    price_per_gpu_second: uint256
    endpoint: String[MAX_ENDPOINT_LENGTH]
    verified_until: uint256
    consecutive_failures: uint256
    jailed: bool


# @dev provider => record; registered means gpu_count != 0.
providers: public(HashMap[address, Provider])


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
    price_per_gpu_second: uint256
    endpoint: String[MAX_ENDPOINT_LENGTH]


# @dev Emitted when consecutive failures jail a provider.
event ProviderJailed:
    provider: indexed(address)
    consecutive_failures: uint256


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
            GPU count voids the current verification until a new report.
            Running jobs keep the price they were accepted at.
    @param gpu_class A class governance lists.
    @param gpu_count GPUs offered, 1 .. 1,024.
    @param price_per_gpu_second Payment-token base units, 1 .. 2**96 - 1.
    @param endpoint The agent's URL, 1 .. 128 characters.
    """
    record: Provider = self.providers[msg.sender]
    assert record.gpu_count != 0, "registry: not registered"
    self._check_claim(gpu_class, gpu_count, price_per_gpu_second, endpoint)
    if record.gpu_class != gpu_class or record.gpu_count != gpu_count:
        self.providers[msg.sender].verified_until = 0
        self.providers[msg.sender].gpu_class = gpu_class
        self.providers[msg.sender].gpu_count = gpu_count
    self.providers[msg.sender].price_per_gpu_second = price_per_gpu_second
    self.providers[msg.sender].endpoint = endpoint
    log ProviderUpdated(
        provider=msg.sender,
        gpu_class=gpu_class,
        gpu_count=gpu_count,
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
    self.providers[provider].consecutive_failures = 0
    log ProviderUnjailed(provider=provider)


@external
@view
def is_verified(provider: address) -> bool:
    """
    @notice Whether a hardware report currently verifies `provider`'s claim.
    """
    return self.providers[provider].verified_until >= block.timestamp


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
@view
def _price_if_can_serve(provider: address, gpu_class: uint16, gpu_count: uint16, max_price: uint256) -> uint256:
    """
    @dev Returns `provider`'s price if it may take a job of this class, size
         and price cap now; throws with the reason otherwise. Reads single
         fields, not the whole record (the endpoint spans five slots).
    """
    available_gpus: uint16 = self.providers[provider].gpu_count
    assert available_gpus != 0, "registry: not registered"
    assert not self.providers[provider].jailed, "registry: provider jailed"
    assert self.providers[provider].gpu_class == gpu_class, "registry: wrong gpu class"
    assert available_gpus >= gpu_count, "registry: not enough gpus"
    assert self.providers[provider].verified_until >= block.timestamp, "registry: hardware not verified"
    price: uint256 = self.providers[provider].price_per_gpu_second
    assert price <= max_price, "registry: price above job max"
    return price


@internal
def _set_verified_until(provider: address, verified_until: uint256):
    self.providers[provider].verified_until = verified_until


@internal
def _record_success(provider: address):
    if self.providers[provider].consecutive_failures != 0:
        self.providers[provider].consecutive_failures = 0


@internal
def _record_failure(provider: address):
    """
    @dev Counts a failed job and jails the provider at the threshold.
    """
    failures: uint256 = self.providers[provider].consecutive_failures + 1
    self.providers[provider].consecutive_failures = failures
    if failures >= governance.jail_after_failures and not self.providers[provider].jailed:
        self.providers[provider].jailed = True
        log ProviderJailed(provider=provider, consecutive_failures=failures)
