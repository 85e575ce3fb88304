//! A local chain that behaves like Base Sepolia: anvil with chain id 84532, agora's
//! EIP-3009 USDC at the real Base Sepolia USDC address, the ERC-8004 Identity Registry
//! at the real testnet address, and funded accounts.
//!
//! Every chain test and `agora devnet`/`agora demo` use this one fixture, so what
//! passes here passes against the same addresses on the public testnet.

mod anvil;
mod contracts;

use std::path::PathBuf;
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256, address};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde::Serialize;
use x402::{Asset, Money, Network};

pub use anvil::find_anvil;
pub use contracts::{Artifact, IDENTITY_REGISTRY, LOCAL_USDC, MULTICALL3};

/// Chain id of Base Sepolia, which the devnet impersonates.
pub const CHAIN_ID: u64 = 84532;
/// The ERC-8004 Identity Registry on every testnet.
pub const IDENTITY_REGISTRY_ADDRESS: Address =
    address!("0x8004A818BFB912233c491871b3d84c89A494BD9e");
/// Multicall3's canonical address on Base, Base Sepolia and most EVM chains.
pub const MULTICALL3_ADDRESS: Address = address!("0xcA11bde05977b3631167028862bE2a173976CA11");

/// How to start a devnet.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Accounts to create and fund (at least 1; account 0 deploys and mints).
    pub accounts: usize,
    /// USDC minted to each account.
    pub usdc_per_account: Money,
    /// ETH given to each account, in whole ether.
    pub eth_per_account: u64,
    /// Loopback port; 0 picks a free one.
    pub port: u16,
    /// The anvil binary; found with [`find_anvil`] when `None`.
    pub anvil: Option<PathBuf>,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            accounts: 10,
            usdc_per_account: Money::from_atomic(U256::from(1_000_000_000u64), 6),
            eth_per_account: 10_000,
            port: 0,
            anvil: None,
        }
    }
}

/// A funded development account. Its key is anvil's well-known test key: local only.
#[derive(Debug, Clone)]
pub struct DevAccount {
    signer: PrivateKeySigner,
}

impl DevAccount {
    /// Wraps a signer.
    pub fn new(signer: PrivateKeySigner) -> Self {
        Self { signer }
    }

    /// The account.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Its private key.
    pub fn private_key(&self) -> B256 {
        self.signer.to_bytes()
    }

    /// A signer for this account.
    pub fn signer(&self) -> PrivateKeySigner {
        self.signer.clone()
    }
}

/// Why the devnet could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// No anvil binary.
    #[error(
        "anvil was not found: set AGORA_ANVIL to its path, put it on PATH, or run scripts/setup (installs @foundry-rs/anvil from npm into tools/)"
    )]
    AnvilNotFound,
    /// The process failed to start or to come up.
    #[error("anvil failed to start: {0}")]
    Start(String),
    /// A chain call failed.
    #[error("devnet RPC call failed: {0}")]
    Rpc(String),
    /// A bad configuration.
    #[error("{0}")]
    Config(String),
}

/// A running devnet. Dropping it stops anvil.
pub struct Devnet {
    process: anvil::AnvilProcess,
    rpc_url: String,
    accounts: Vec<DevAccount>,
    usdc: Asset,
}

impl Devnet {
    /// Starts anvil, installs the contracts, funds the accounts.
    pub async fn start(config: DevnetConfig) -> Result<Self, DevnetError> {
        if config.accounts == 0 {
            return Err(DevnetError::Config(
                "a devnet needs at least one account (account 0 deploys the contracts)".into(),
            ));
        }
        let binary = match &config.anvil {
            Some(path) => path.clone(),
            None => find_anvil()?,
        };
        let process = anvil::AnvilProcess::spawn(&binary, &config).await?;
        let usdc = Network::BASE_SEPOLIA
            .default_asset()
            .map_err(|e| DevnetError::Config(e.to_string()))?;
        let devnet = Self {
            rpc_url: process.rpc_url(),
            accounts: process.accounts().to_vec(),
            process,
            usdc,
        };
        devnet.install_contracts().await?;
        for account in &devnet.accounts {
            devnet
                .mint_usdc(account.address(), config.usdc_per_account.atomic)
                .await?;
        }
        Ok(devnet)
    }

    /// The HTTP JSON-RPC URL (loopback).
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// The funded accounts; account 0 is the deployer and USDC minter.
    pub fn accounts(&self) -> &[DevAccount] {
        &self.accounts
    }

    /// USDC as installed (Base Sepolia address, EIP-712 "USDC"/"2", 6 decimals).
    pub fn usdc(&self) -> &Asset {
        &self.usdc
    }

    /// The network the devnet impersonates.
    pub fn network(&self) -> Network {
        Network::Eip155(CHAIN_ID)
    }

    /// A provider that signs with `signer`.
    pub fn provider_for(&self, signer: PrivateKeySigner) -> Result<DynProvider, DevnetError> {
        let url = self
            .rpc_url
            .parse()
            .map_err(|e| DevnetError::Rpc(format!("bad rpc url {}: {e}", self.rpc_url)))?;
        Ok(ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url)
            .erased())
    }

    /// A provider that signs with account 0.
    pub fn provider(&self) -> Result<DynProvider, DevnetError> {
        self.provider_for(self.accounts[0].signer())
    }

    /// Mints `atomic` USDC to `to`.
    pub async fn mint_usdc(&self, to: Address, atomic: U256) -> Result<(), DevnetError> {
        let usdc = contracts::ILocalUsdc::new(self.usdc.address, self.provider()?);
        let receipt = usdc
            .mint(to, atomic)
            .send()
            .await
            .map_err(rpc)?
            .get_receipt()
            .await
            .map_err(rpc)?;
        if !receipt.status() {
            return Err(DevnetError::Rpc(format!("mint to {to} reverted")));
        }
        Ok(())
    }

    /// Gives `to` `wei` of ETH for gas.
    pub async fn set_eth_balance(&self, to: Address, wei: U256) -> Result<(), DevnetError> {
        self.provider()?
            .raw_request::<_, ()>("anvil_setBalance".into(), (to, wei))
            .await
            .map_err(rpc)
    }

    /// The USDC balance of `who`, in atomic units.
    pub async fn usdc_balance(&self, who: Address) -> Result<U256, DevnetError> {
        contracts::ILocalUsdc::new(self.usdc.address, self.provider()?)
            .balanceOf(who)
            .call()
            .await
            .map_err(rpc)
    }

    /// Moves the chain's clock forward and mines a block.
    pub async fn advance_time(&self, by: Duration) -> Result<(), DevnetError> {
        let provider = self.provider()?;
        provider
            .raw_request::<_, i64>("evm_increaseTime".into(), (by.as_secs(),))
            .await
            .map_err(rpc)?;
        self.mine().await
    }

    /// Turns mining on every transaction on or off (off keeps transactions pending,
    /// to test what happens between broadcast and receipt).
    pub async fn set_automine(&self, enabled: bool) -> Result<(), DevnetError> {
        self.provider()?
            .raw_request::<_, ()>("evm_setAutomine".into(), (enabled,))
            .await
            .map_err(rpc)
    }

    /// Mines a block every `seconds` from now on, as `anvil --block-time` does (a
    /// public chain's pace), after the contracts were installed at full speed.
    pub async fn set_block_time(&self, seconds: u64) -> Result<(), DevnetError> {
        self.set_automine(false).await?;
        self.provider()?
            .raw_request::<_, ()>("evm_setIntervalMining".into(), (seconds,))
            .await
            .map_err(rpc)
    }

    /// Mines one block now.
    pub async fn mine(&self) -> Result<(), DevnetError> {
        self.provider()?
            .raw_request::<_, String>("evm_mine".into(), ())
            .await
            .map(drop)
            .map_err(rpc)
    }

    /// Installs the contracts at their public addresses: deploy normally (so
    /// immutables are filled in), then copy the runtime code with `anvil_setCode`.
    async fn install_contracts(&self) -> Result<(), DevnetError> {
        let provider = self.provider()?;
        let minter = self.accounts[0].address();
        for (artifact, target, args) in [
            (&LOCAL_USDC, self.usdc.address, minter.into_word().to_vec()),
            (&IDENTITY_REGISTRY, IDENTITY_REGISTRY_ADDRESS, Vec::new()),
            (&MULTICALL3, MULTICALL3_ADDRESS, Vec::new()),
        ] {
            contracts::install(&provider, artifact, &args, target).await?;
        }
        Ok(())
    }

    /// What `agora devnet --json` prints.
    pub async fn summary(&self) -> Result<DevnetSummary, DevnetError> {
        let provider = self.provider()?;
        let mut accounts = Vec::with_capacity(self.accounts.len());
        for account in &self.accounts {
            let usdc = self.usdc_balance(account.address()).await?;
            let wei = provider.get_balance(account.address()).await.map_err(rpc)?;
            accounts.push(AccountSummary {
                address: account.address(),
                private_key: account.private_key(),
                usdc: Money::from_atomic(usdc, self.usdc.decimals).to_string(),
                eth: Money::from_atomic(wei, 18).to_string(),
            });
        }
        Ok(DevnetSummary {
            rpc_url: self.rpc_url.clone(),
            chain_id: CHAIN_ID,
            network: self.network().caip2(),
            usdc: UsdcSummary {
                address: self.usdc.address,
                name: self.usdc.eip712_name.clone(),
                version: self.usdc.eip712_version.clone(),
                decimals: self.usdc.decimals,
            },
            identity_registry: IDENTITY_REGISTRY_ADDRESS,
            multicall3: MULTICALL3_ADDRESS,
            accounts,
            keys_note: "anvil's well-known development keys: local use only, never fund them on a real chain",
        })
    }

    /// Stops anvil and waits for it to exit.
    pub async fn stop(self) {
        self.process.stop().await;
    }

    /// Resolves when anvil exits by itself (for `agora devnet` to notice a crash).
    pub async fn exited(&mut self) -> String {
        self.process.exited().await
    }
}

fn rpc(e: impl std::fmt::Display) -> DevnetError {
    DevnetError::Rpc(e.to_string())
}

/// Machine-readable description of a running devnet.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DevnetSummary {
    /// JSON-RPC endpoint.
    pub rpc_url: String,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// CAIP-2 network id.
    pub network: String,
    /// The installed USDC.
    pub usdc: UsdcSummary,
    /// The installed ERC-8004 Identity Registry.
    pub identity_registry: Address,
    /// The installed Multicall3 (`aggregate3`), which batched settlements call.
    pub multicall3: Address,
    /// Funded accounts.
    pub accounts: Vec<AccountSummary>,
    /// A reminder that the keys are public test keys.
    pub keys_note: &'static str,
}

/// The token part of [`DevnetSummary`].
#[derive(Debug, Serialize)]
pub struct UsdcSummary {
    /// Contract address.
    pub address: Address,
    /// EIP-712 name.
    pub name: String,
    /// EIP-712 version.
    pub version: String,
    /// Decimals.
    pub decimals: u8,
}

/// One account in [`DevnetSummary`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSummary {
    /// Address.
    pub address: Address,
    /// Private key (local-only test key).
    pub private_key: B256,
    /// USDC balance, decimal.
    pub usdc: String,
    /// ETH balance, decimal.
    pub eth: String,
}
