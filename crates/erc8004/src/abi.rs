//! The ERC-8004 Identity Registry (reference 2.0.0) as alloy bindings, where it is
//! deployed, and how an agent's registry is named in registration documents.
//!
//! `register` is overloaded; alloy numbers the overloads in declaration order:
//! `register_0()` (empty URI), `register_1(agentURI)` and
//! `register_2(agentURI, metadata)`.

use alloy::primitives::{Address, address};
use alloy::sol;
use x402::Network;

sol! {
    /// The ERC-8004 Identity Registry, IdentityRegistryUpgradeable 2.0.0: agents are
    /// ERC-721 tokens whose URI points at their registration document. Only the parts
    /// agora calls or indexes are declared; the devnet's contract has the same ABI.
    #[sol(rpc, abi)]
    interface IIdentityRegistry {
        /// One initial metadata entry for `register`; the key `agentWallet` is refused.
        struct MetadataEntry {
            string metadataKey;
            bytes metadataValue;
        }

        /// A new agent was minted to `owner`; `agentId` starts at 0.
        event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
        /// The agent's registration document moved to `newURI`.
        event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);
        /// An on-chain metadata entry changed; topic 2 is keccak256 of the key.
        event MetadataSet(
            uint256 indexed agentId,
            string indexed indexedMetadataKey,
            string metadataKey,
            bytes metadataValue
        );
        /// ERC-721 ownership change (mint when `from` is zero); the indexer follows owners
        /// with it.
        event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

        /// What `ownerOf`, `tokenURI` and the setters revert with for an unknown or burned
        /// agent, so callers can tell "no such agent" from other failures.
        error ERC721NonexistentToken(uint256 tokenId);

        /// Mints an agent with an empty URI to the caller.
        function register() external returns (uint256 agentId);
        /// Mints an agent whose registration document is at `agentURI`.
        function register(string agentURI) external returns (uint256 agentId);
        /// Mints an agent with a URI and initial metadata entries.
        function register(string agentURI, MetadataEntry[] metadata) external returns (uint256 agentId);
        /// Points the agent at a new registration document (owner or operator only).
        function setAgentURI(uint256 agentId, string newURI) external;
        /// The agent's registration document URI.
        function tokenURI(uint256 tokenId) external view returns (string);
        /// The agent's owner.
        function ownerOf(uint256 tokenId) external view returns (address);
        /// One metadata value (empty when unset).
        function getMetadata(uint256 agentId, string metadataKey) external view returns (bytes);
        /// Sets one metadata value (owner or operator only; not `agentWallet`).
        function setMetadata(uint256 agentId, string metadataKey, bytes metadataValue) external;
        /// The wallet that receives payments for the agent (zero when unset).
        function getAgentWallet(uint256 agentId) external view returns (address);
        /// "2.0.0" on the registries agora targets.
        function getVersion() external pure returns (string);
        /// Whether `spender` may update the agent (owner, approved or operator).
        function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool);
    }
}

/// Where the three ERC-8004 registries live on one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryAddresses {
    /// Identity Registry (agents, URIs, metadata).
    pub identity: Address,
    /// Reputation Registry (feedback).
    pub reputation: Address,
    /// Validation Registry (v2, validator requests and responses).
    pub validation: Address,
}

/// The registries on every mainnet they are deployed to (vanity CREATE2 addresses,
/// identical on each chain).
pub const MAINNET_REGISTRIES: RegistryAddresses = RegistryAddresses {
    identity: address!("0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"),
    reputation: address!("0x8004BAa17C55a88189AE136b182e5fdA19dE9b63"),
    validation: address!("0x8004Cc8439f36fd5F9F049D9fF86523Df6dAAB58"),
};

/// The registries on every testnet they are deployed to, Base Sepolia included; the
/// local devnet installs the Identity Registry at the same address.
pub const TESTNET_REGISTRIES: RegistryAddresses = RegistryAddresses {
    identity: address!("0x8004A818BFB912233c491871b3d84c89A494BD9e"),
    reputation: address!("0x8004B663056A597Dffe9eCcC1965A193B7388713"),
    validation: address!("0x8004Cb1BF31DAf7788923b405b754f57acEB4272"),
};

/// Mainnets with the registries, from erc-8004-contracts `scripts/addresses.ts`. Being
/// in x402's table is not enough: Sei and IoTeX have USDC there but no registry.
const MAINNET_CHAIN_IDS: &[u64] = &[
    1, 8453, 42161, 10, 137, 43114, 56, 143, 534352, 100, 42220, 167000, 59144, 4326, 196, 2741,
    5000, 1868, 2345, 1088, 295, 1187947933, 360, 50,
];

/// Testnets with the registries, from the same file, less Hardhat's 31337: a local
/// chain has them only if someone installed them (agora's devnet runs as 84532).
const TESTNET_CHAIN_IDS: &[u64] = &[
    11155111, 84532, 421614, 11155420, 80002, 43113, 97, 10143, 534351, 10200, 11142220, 167013,
    6343, 59141, 1952, 11124, 5003, 1946, 48816, 59902, 296, 324705682, 5042002, 11011, 51,
];

/// The registries on `network`, or `None` where ERC-8004 is not deployed (so callers
/// ask for an explicit registry address instead of guessing).
pub fn registries(network: &Network) -> Option<RegistryAddresses> {
    let chain_id = network.chain_id()?;
    if MAINNET_CHAIN_IDS.contains(&chain_id) {
        Some(MAINNET_REGISTRIES)
    } else if TESTNET_CHAIN_IDS.contains(&chain_id) {
        Some(TESTNET_REGISTRIES)
    } else {
        None
    }
}

/// The Identity Registry on `network`: the mainnet address on mainnets, the testnet
/// address on testnets (Base Sepolia and the devnet), `None` elsewhere.
pub fn identity_registry(network: &Network) -> Option<Address> {
    registries(network).map(|r| r.identity)
}

/// The `agentRegistry` string of registration documents,
/// `eip155:<chainId>:<EIP-55 checksummed registry address>`.
pub fn agent_registry_id(chain_id: u64, registry: Address) -> String {
    format!("eip155:{chain_id}:{}", registry.to_checksum(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::json_abi::JsonAbi;
    use alloy::primitives::{B256, b256, keccak256};
    use alloy::sol_types::{SolCall, SolEvent};
    use x402::network::KNOWN_CHAINS;

    #[test]
    fn event_topics_match_the_reference() {
        let expected: [(B256, B256); 4] = [
            (
                IIdentityRegistry::Registered::SIGNATURE_HASH,
                b256!("0xca52e62c367d81bb2e328eb795f7c7ba24afb478408a26c0e201d155c449bc4a"),
            ),
            (
                IIdentityRegistry::URIUpdated::SIGNATURE_HASH,
                b256!("0x3a2c7fffc2cba7582c690e3b82c453ea02a308326a98a3ad7576c606336409fb"),
            ),
            (
                IIdentityRegistry::MetadataSet::SIGNATURE_HASH,
                b256!("0x2c149ed548c6d2993cd73efe187df6eccabe4538091b33adbd25fafdb8a1468b"),
            ),
            (
                IIdentityRegistry::Transfer::SIGNATURE_HASH,
                b256!("0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"),
            ),
        ];
        for (ours, reference) in expected {
            assert_eq!(ours, reference);
        }
        assert_eq!(
            keccak256("MetadataSet(uint256,string,string,bytes)"),
            IIdentityRegistry::MetadataSet::SIGNATURE_HASH
        );
    }

    /// `register(string)` as obol's notes give it; the others computed with js-sha3.
    #[test]
    fn selectors_are_the_expected_ones() {
        assert_eq!(
            IIdentityRegistry::register_1Call::SELECTOR,
            [0xf2, 0xc2, 0x98, 0xbe]
        );
        assert_eq!(
            IIdentityRegistry::register_2Call::SELECTOR,
            [0x8e, 0xa4, 0x22, 0x86]
        );
        assert_eq!(
            IIdentityRegistry::setAgentURICall::SELECTOR,
            [0x0a, 0xf2, 0x8b, 0xd3]
        );
        assert_eq!(
            IIdentityRegistry::setMetadataCall::SELECTOR,
            [0x46, 0x66, 0x48, 0xda]
        );
        assert_eq!(IIdentityRegistry::register_0Call::SIGNATURE, "register()");
        assert_eq!(
            IIdentityRegistry::register_2Call::SIGNATURE,
            "register(string,(string,bytes)[])"
        );
    }

    /// Every function, event and error declared here exists with the same types,
    /// indexing and mutability in the contract the devnet installs.
    #[test]
    fn abi_matches_the_devnet_contract() {
        #[derive(serde::Deserialize)]
        struct Artifact {
            abi: JsonAbi,
        }
        let deployed: Artifact = serde_json::from_str(devnet::IDENTITY_REGISTRY.json).unwrap();
        let deployed = deployed.abi;
        let ours = IIdentityRegistry::abi::contract();

        let mut checked = 0;
        for function in ours.functions() {
            let theirs = deployed
                .functions()
                .find(|f| f.signature() == function.signature())
                .unwrap_or_else(|| panic!("{} is not deployed", function.signature()));
            let types = |f: &alloy::json_abi::Function| -> Vec<String> {
                f.outputs
                    .iter()
                    .map(|p| p.selector_type().into_owned())
                    .collect()
            };
            assert_eq!(types(theirs), types(function), "{}", function.signature());
            assert_eq!(theirs.state_mutability, function.state_mutability);
            checked += 1;
        }
        assert_eq!(checked, 11);
        for event in ours.events() {
            let theirs = deployed
                .events()
                .find(|e| e.selector() == event.selector())
                .unwrap_or_else(|| panic!("event {} is not deployed", event.signature()));
            let shape = |e: &alloy::json_abi::Event| -> Vec<(String, bool)> {
                e.inputs.iter().map(|p| (p.ty.clone(), p.indexed)).collect()
            };
            assert_eq!(shape(theirs), shape(event), "{}", event.signature());
        }
        assert_eq!(ours.events().count(), 4);
        for error in ours.errors() {
            assert!(
                deployed.errors().any(|e| e.selector() == error.selector()),
                "error {} is not in the contract",
                error.signature()
            );
        }
    }

    #[test]
    fn base_sepolia_and_the_devnet_use_the_testnet_registry() {
        assert_eq!(
            identity_registry(&Network::BASE_SEPOLIA),
            Some(devnet::IDENTITY_REGISTRY_ADDRESS)
        );
        assert_eq!(
            identity_registry(&Network::Eip155(devnet::CHAIN_ID)),
            Some(TESTNET_REGISTRIES.identity)
        );
        assert_eq!(
            identity_registry(&Network::parse("base").unwrap()),
            Some(address!("0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"))
        );
        assert_eq!(
            registries(&Network::Eip155(11155111)),
            Some(TESTNET_REGISTRIES)
        );
    }

    #[test]
    fn chains_without_the_registry_have_none() {
        for network in ["sei", "iotex", "eip155:31337", "eip155:999999", "solana"] {
            let network = Network::parse(network).unwrap();
            assert_eq!(identity_registry(&network), None, "{network}");
        }
    }

    /// The deployment lists and x402's table must agree on which chains are testnets,
    /// or a seller on a testnet would be listed on the mainnet registry.
    #[test]
    fn deployment_lists_agree_with_x402_testnet_flags() {
        let mut deployed = 0;
        for chain in KNOWN_CHAINS {
            let network = Network::Eip155(chain.chain_id);
            match registries(&network) {
                Some(r) if chain.testnet => assert_eq!(r, TESTNET_REGISTRIES, "{network}"),
                Some(r) => assert_eq!(r, MAINNET_REGISTRIES, "{network}"),
                None => continue,
            }
            deployed += 1;
        }
        assert_eq!(deployed, KNOWN_CHAINS.len() - 2, "all but Sei and IoTeX");
        assert!(
            MAINNET_CHAIN_IDS
                .iter()
                .all(|id| !TESTNET_CHAIN_IDS.contains(id))
        );
    }

    #[test]
    fn agent_registry_id_is_caip10_with_a_checksummed_address() {
        let lowercase: Address = "0x8004a818bfb912233c491871b3d84c89a494bd9e"
            .parse()
            .unwrap();
        assert_eq!(
            agent_registry_id(84532, lowercase),
            "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e"
        );
    }
}
