// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @title IdentityRegistry
/// @notice ERC-8004 ("Trustless Agents") Identity Registry, spec revision 2.0.0,
///         for agora's local devnet. Its external functions and events match the
///         reference IdentityRegistryUpgradeable 2.0.0; it is not upgradeable and
///         has no owner.
///
///         Agents are ERC-721 tokens ("AgentIdentity"/"AGENT") with URI storage.
///         agentId = _lastId++, so the first agent is 0. Each agent carries
///         key/value metadata; the reserved key "agentWallet" holds 20 packed
///         address bytes, set to the registrant on registration, changed only
///         through an EIP-712 proof from the new wallet ({setAgentWallet}) and
///         cleared on every transfer.
///
/// @dev Devnet installation constraint: the contract is deployed normally and its
///      runtime code (immutables included) is copied to a fixed address with
///      `anvil_setCode`; storage is not copied. So the constructor writes no
///      storage: name()/symbol() are constants (ERC721 is given empty strings),
///      and the EIP-712 domain {"ERC8004IdentityRegistry","1"} lives in
///      OpenZeppelin EIP712's immutables and is rebuilt for `address(this)`.
contract IdentityRegistry is ERC721URIStorage, EIP712 {
    struct MetadataEntry {
        string metadataKey;
        bytes metadataValue;
    }

    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
    event MetadataSet(
        uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue
    );
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);

    string private constant TOKEN_NAME = "AgentIdentity";
    string private constant TOKEN_SYMBOL = "AGENT";
    string private constant VERSION = "2.0.0";
    string private constant AGENT_WALLET_KEY = "agentWallet";
    bytes32 private constant AGENT_WALLET_KEY_HASH = keccak256(bytes(AGENT_WALLET_KEY));
    uint256 private constant MAX_DEADLINE_DELAY = 5 minutes;

    /// keccak256("AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)")
    bytes32 private constant AGENT_WALLET_SET_TYPEHASH =
        keccak256("AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)");

    /// Next agent id; the first registration gets 0.
    uint256 private _lastId;
    /// agentId => metadata key => value ("agentWallet" included).
    mapping(uint256 => mapping(string => bytes)) private _metadata;

    constructor() ERC721("", "") EIP712("ERC8004IdentityRegistry", "1") {}

    // ---------------------------------------------------------------------
    // Registration
    // ---------------------------------------------------------------------

    /// @notice Register a new agent with an empty URI; the caller owns it.
    function register() external returns (uint256 agentId) {
        agentId = _registerAgent(msg.sender);
        emit Registered(agentId, "", msg.sender);
        _emitWalletSet(agentId, msg.sender);
    }

    /// @notice Register a new agent whose registration file is at `agentURI`.
    function register(string memory agentURI) external returns (uint256 agentId) {
        agentId = _registerAgent(msg.sender);
        _setTokenURI(agentId, agentURI);
        emit Registered(agentId, agentURI, msg.sender);
        _emitWalletSet(agentId, msg.sender);
    }

    /// @notice Register a new agent with a URI and initial metadata entries.
    ///         The key "agentWallet" may not appear in `metadata`.
    function register(string memory agentURI, MetadataEntry[] memory metadata) external returns (uint256 agentId) {
        agentId = _registerAgent(msg.sender);
        _setTokenURI(agentId, agentURI);
        emit Registered(agentId, agentURI, msg.sender);
        _emitWalletSet(agentId, msg.sender);
        for (uint256 i = 0; i < metadata.length; ++i) {
            _requireNotReserved(metadata[i].metadataKey);
            _storeMetadata(agentId, metadata[i].metadataKey, metadata[i].metadataValue);
        }
    }

    // ---------------------------------------------------------------------
    // URI and metadata
    // ---------------------------------------------------------------------

    /// @notice Point agent `agentId` at a new registration file. Owner, approved
    ///         address or operator only.
    function setAgentURI(uint256 agentId, string calldata newURI) external {
        _requireAuthorized(agentId);
        _setTokenURI(agentId, newURI);
        emit URIUpdated(agentId, newURI, msg.sender);
    }

    function getMetadata(uint256 agentId, string memory metadataKey) external view returns (bytes memory) {
        return _metadata[agentId][metadataKey];
    }

    /// @notice Set one metadata entry. Owner, approved address or operator only;
    ///         "agentWallet" is reserved (see {setAgentWallet}).
    function setMetadata(uint256 agentId, string memory metadataKey, bytes memory metadataValue) external {
        _requireAuthorized(agentId);
        _requireNotReserved(metadataKey);
        _storeMetadata(agentId, metadataKey, metadataValue);
    }

    // ---------------------------------------------------------------------
    // Agent wallet
    // ---------------------------------------------------------------------

    /// @notice The agent's payment wallet (zero when unset).
    function getAgentWallet(uint256 agentId) external view returns (address) {
        return address(bytes20(_metadata[agentId][AGENT_WALLET_KEY]));
    }

    /// @notice Set the agent's wallet to `newWallet`, proven by `signature` from
    ///         `newWallet` over EIP-712 AgentWalletSet(agentId, newWallet, owner,
    ///         deadline) in domain {"ERC8004IdentityRegistry","1",chainId,this}.
    ///         Requires now <= deadline <= now + 5 minutes. ECDSA is tried first
    ///         (EOAs and EIP-7702 accounts), then ERC-1271.
    function setAgentWallet(uint256 agentId, address newWallet, uint256 deadline, bytes calldata signature) external {
        address owner = _requireAuthorized(agentId);
        require(newWallet != address(0), "bad wallet");
        require(block.timestamp <= deadline, "expired");
        require(deadline <= block.timestamp + MAX_DEADLINE_DELAY, "deadline too far");

        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(AGENT_WALLET_SET_TYPEHASH, agentId, newWallet, owner, deadline)));
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError || recovered != newWallet) {
            require(
                SignatureChecker.isValidERC1271SignatureNowCalldata(newWallet, digest, signature),
                "invalid wallet sig"
            );
        }
        _storeMetadata(agentId, AGENT_WALLET_KEY, abi.encodePacked(newWallet));
    }

    /// @notice Clear the agent's wallet. Owner, approved address or operator only.
    function unsetAgentWallet(uint256 agentId) external {
        _requireAuthorized(agentId);
        _storeMetadata(agentId, AGENT_WALLET_KEY, "");
    }

    // ---------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------

    /// @notice Whether `spender` is the owner, approved for, or an operator of
    ///         agent `agentId`. Reverts (ERC721NonexistentToken) for unknown ids.
    function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool) {
        return _isAuthorized(ownerOf(agentId), spender, agentId);
    }

    function getVersion() external pure returns (string memory) {
        return VERSION;
    }

    function name() public pure override returns (string memory) {
        return TOKEN_NAME;
    }

    function symbol() public pure override returns (string memory) {
        return TOKEN_SYMBOL;
    }

    // ---------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------

    /// @dev Allocates the next id, records `owner` as the agent wallet, then
    ///      mints (safe mint: contract owners must accept ERC-721 tokens).
    function _registerAgent(address owner) private returns (uint256 agentId) {
        agentId = _lastId++;
        _metadata[agentId][AGENT_WALLET_KEY] = abi.encodePacked(owner);
        _safeMint(owner, agentId);
    }

    function _emitWalletSet(uint256 agentId, address wallet) private {
        emit MetadataSet(agentId, AGENT_WALLET_KEY, AGENT_WALLET_KEY, abi.encodePacked(wallet));
    }

    function _storeMetadata(uint256 agentId, string memory key, bytes memory value) private {
        _metadata[agentId][key] = value;
        emit MetadataSet(agentId, key, key, value);
    }

    function _requireNotReserved(string memory key) private pure {
        require(keccak256(bytes(key)) != AGENT_WALLET_KEY_HASH, "reserved key");
    }

    /// @dev Reverts unless msg.sender is the owner, approved for, or an operator
    ///      of `agentId`; returns the owner. Unknown ids revert with
    ///      ERC721NonexistentToken.
    function _requireAuthorized(uint256 agentId) private view returns (address owner) {
        owner = _requireOwned(agentId);
        require(_isAuthorized(owner, msg.sender, agentId), "Not authorized");
    }

    /// @dev On a transfer of an existing agent (not mint, not burn) the agent
    ///      wallet is cleared, emitting MetadataSet(id,"agentWallet",...,0x)
    ///      before the ownership change.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address) {
        address from = _ownerOf(tokenId);
        if (from != address(0) && to != address(0)) {
            _storeMetadata(tokenId, AGENT_WALLET_KEY, "");
        }
        return super._update(to, tokenId, auth);
    }
}
