//! The committed contract artifacts and their installation at fixed addresses.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol;

use crate::{DevnetError, rpc};

sol! {
    /// The local-only parts of agora's LocalUSDC (the EIP-3009 part is in `x402`).
    #[sol(rpc)]
    interface ILocalUsdc {
        function mint(address to, uint256 amount) external;
        function balanceOf(address account) external view returns (uint256);
    }
}

/// A compiled contract as written by `contracts/build.mjs`.
#[derive(Debug, Clone, Copy)]
pub struct Artifact {
    /// Contract name.
    pub name: &'static str,
    /// The artifact JSON (`abi`, `bytecode`, `deployedBytecode`).
    pub json: &'static str,
}

/// agora's EIP-3009 test USDC, installed at the Base Sepolia USDC address.
pub const LOCAL_USDC: Artifact = Artifact {
    name: "LocalUSDC",
    json: include_str!("../../../contracts/out/LocalUSDC.json"),
};

/// agora's ERC-8004 Identity Registry 2.0.0, installed at the testnet address.
pub const IDENTITY_REGISTRY: Artifact = Artifact {
    name: "IdentityRegistry",
    json: include_str!("../../../contracts/out/IdentityRegistry.json"),
};

/// A Multicall3-compatible `aggregate3`, installed at Multicall3's canonical address
/// (where Base and Base Sepolia have it) so the facilitator can batch settlements.
pub const MULTICALL3: Artifact = Artifact {
    name: "Multicall3",
    json: include_str!("../../../contracts/out/Multicall3.json"),
};

impl Artifact {
    /// The creation bytecode.
    pub fn bytecode(&self) -> Result<Bytes, DevnetError> {
        #[derive(serde::Deserialize)]
        struct Compiled {
            bytecode: Bytes,
        }
        serde_json::from_str::<Compiled>(self.json)
            .map(|c| c.bytecode)
            .map_err(|e| DevnetError::Config(format!("artifact {} is unreadable: {e}", self.name)))
    }
}

/// Deploys `artifact` with ABI-encoded constructor `args`, then copies its runtime code
/// (immutables included) to `target`. Constructors write no storage, so the copy works.
pub(crate) async fn install(
    provider: &DynProvider,
    artifact: &Artifact,
    args: &[u8],
    target: Address,
) -> Result<(), DevnetError> {
    let mut code = artifact.bytecode()?.to_vec();
    code.extend_from_slice(args);
    let receipt = provider
        .send_transaction(TransactionRequest::default().with_deploy_code(code))
        .await
        .map_err(rpc)?
        .get_receipt()
        .await
        .map_err(rpc)?;
    let deployed = receipt
        .contract_address
        .filter(|_| receipt.status())
        .ok_or_else(|| DevnetError::Rpc(format!("deploying {} failed", artifact.name)))?;
    let runtime = provider.get_code_at(deployed).await.map_err(rpc)?;
    provider
        .raw_request::<_, ()>("anvil_setCode".into(), (target, runtime))
        .await
        .map_err(rpc)
}
