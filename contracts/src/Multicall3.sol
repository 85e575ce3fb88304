// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Multicall3
/// @notice agora's devnet copy of the Multicall3 interface its facilitator batches
///         settlements through: `aggregate3` only, with the canonical contract's
///         ABI and behaviour (each call may be allowed to fail; a call that fails
///         without that permission reverts the whole batch with
///         "Multicall3: call failed"). `agora devnet` installs it at the canonical
///         address 0xcA11bde05977b3631167028862bE2a173976CA11, where Base and Base
///         Sepolia have the real one.
///
/// @dev No constructor and no storage, so the runtime code can be copied to the
///      canonical address with `anvil_setCode`.
contract Multicall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Calls each target in order, from this contract.
    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData) {
        uint256 length = calls.length;
        returnData = new Result[](length);
        for (uint256 i = 0; i < length; ++i) {
            Call3 calldata c = calls[i];
            (bool success, bytes memory data) = c.target.call(c.callData);
            if (!success && !c.allowFailure) {
                revert("Multicall3: call failed");
            }
            returnData[i] = Result(success, data);
        }
    }
}
