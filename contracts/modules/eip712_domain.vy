# pragma version ~=0.4.3
"""
@title EIP-712 domain of this deployment
@custom:contract-name eip712_domain
@license GNU Affero General Public License v3.0 only
@notice The domain every committee report is signed under: name
        "gpumarket", version "1", this chain and this contract, so no
        signature replays across chains or deployments. The separator is
        computed on each use from constants, `chain.id` and `self` (about
        200 gas), not cached in immutables: a fork's new chain id is picked
        up by construction, and the deployed code stays 320 bytes smaller
        than with snekmate's cached domain (the market is near EIP-170's
        size limit). `eip712Domain` describes the domain (EIP-5267).
@custom:security No storage: nothing here can be observed half-updated,
        so unlike the other modules it needs no reentrancy lock.
"""


# @dev The domain's name and version; the off-chain signer uses the same.
NAME: constant(String[9]) = "gpumarket"
VERSION: constant(String[1]) = "1"
# @dev keccak256 of the EIP-712 domain type with the four fields we use.
DOMAIN_TYPE_HASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
# @dev Fields present in the domain, EIP-5267's bit map: name, version,
# chainId and verifyingContract (bits 0 to 3).
FIELDS: constant(bytes1) = 0x0f


@external
@view
def eip712Domain() -> (bytes1, String[9], String[1], uint256, address, bytes32, DynArray[uint256, 32]):
    """
    @notice The EIP-712 domain of this deployment (EIP-5267): the fields
            present, name, version, chain id, verifying contract, no salt
            and no extensions.
    """
    return (FIELDS, NAME, VERSION, chain.id, self, empty(bytes32), empty(DynArray[uint256, 32]))


@internal
@view
def _domain_separator() -> bytes32:
    # Not `_domain_separator_of(self)`: one internal call less in the market.
    return keccak256(abi_encode(DOMAIN_TYPE_HASH, keccak256(NAME), keccak256(VERSION), chain.id, self))


@internal
@view
def _domain_separator_of(verifying_contract: address) -> bytes32:
    """
    @dev The separator of the market at `verifying_contract`: the market's
         companion contracts check batch roots signed under its domain.
    """
    return keccak256(abi_encode(DOMAIN_TYPE_HASH, keccak256(NAME), keccak256(VERSION), chain.id, verifying_contract))


@internal
@view
def _hash_typed_data(struct_hash: bytes32) -> bytes32:
    """
    @dev The EIP-712 digest of a struct hash under this domain.
    """
    return keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))


@internal
@view
def _hash_typed_data_of(verifying_contract: address, struct_hash: bytes32) -> bytes32:
    """
    @dev The EIP-712 digest of a struct hash under the market's domain at
         `verifying_contract`.
    """
    return keccak256(concat(b"\x19\x01", self._domain_separator_of(verifying_contract), struct_hash))
