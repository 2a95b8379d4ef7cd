"""EIP-712 typed data signed by the oracle committee and verified by the contracts."""
