//! Setting up a bore relay the way an operator asks for one: a range of public ports,
//! the secrets sellers prove (one list, comma-separated), and the rule that a relay
//! without a secret listens on loopback only, since an open relay on the internet lets
//! anyone answer at a seller's public URL; then serving it until shutdown. The relay
//! itself is [`crate::bore::relay`].

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use crate::bore::{Limits, Relay, RelayConfig, Secret};

/// A relay's set-up, checked: a non-empty port range, and secrets unless it listens
/// on loopback.
#[derive(Debug, Clone)]
pub struct Config {
    /// The control address sellers connect to.
    pub listen: SocketAddr,
    /// The address public ports are opened on.
    pub bind_tunnels: IpAddr,
    /// The public ports handed out.
    pub ports: RangeInclusive<u16>,
    /// The secrets sellers must prove; empty only on a loopback control address.
    pub secrets: Vec<Secret>,
}

/// Why a relay cannot be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The lowest port is above the highest, or zero.
    #[error("{min}-{max} is not a range of ports")]
    NoPorts {
        /// The lowest port asked.
        min: u16,
        /// The highest port asked.
        max: u16,
    },
    /// No secret on a control address other machines can reach.
    #[error(
        "a relay on {listen} needs a secret: without one anyone can open ports on it and take a seller's port"
    )]
    OpenRelay {
        /// The control address asked.
        listen: SocketAddr,
    },
    /// A secret of the list is too weak (see [`Secret::parse`]).
    #[error("{0}")]
    WeakSecret(String),
}

impl Config {
    /// The set-up of a relay on `listen` handing out `min_port..=max_port` on
    /// `bind_tunnels`, to sellers proving one of `secrets` (comma-separated; blank is
    /// none); `source` names where the secrets came from, for a weak one's message.
    pub fn new(
        listen: SocketAddr,
        bind_tunnels: IpAddr,
        (min_port, max_port): (u16, u16),
        secrets: Option<&str>,
        source: &str,
    ) -> Result<Self, ConfigError> {
        if min_port > max_port || min_port == 0 {
            return Err(ConfigError::NoPorts {
                min: min_port,
                max: max_port,
            });
        }
        let secrets = match secrets.filter(|t| !t.trim().is_empty()) {
            Some(text) => text
                .split(',')
                .map(|one| Secret::parse(one.trim(), source).map_err(ConfigError::WeakSecret))
                .collect::<Result<_, _>>()?,
            None if listen.ip().is_loopback() => Vec::new(),
            None => return Err(ConfigError::OpenRelay { listen }),
        };
        Ok(Self {
            listen,
            bind_tunnels,
            ports: min_port..=max_port,
            secrets,
        })
    }

    /// Whether sellers must prove a secret.
    pub fn secret_required(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// The relay, listening, with the default [`Limits`].
    pub async fn bind(self) -> io::Result<Relay> {
        Relay::bind(RelayConfig {
            control: self.listen,
            tunnels: self.bind_tunnels,
            ports: self.ports,
            secrets: self.secrets,
            limits: Limits::default(),
        })
        .await
    }
}

/// Serves `relay` until `shutdown` resolves (Ok) or the relay stops (its error).
pub async fn serve(relay: Relay, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    tokio::select! {
        served = relay.run() => served,
        () = shutdown => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ANY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

    fn config(
        listen: &str,
        ports: (u16, u16),
        secrets: Option<&str>,
    ) -> Result<Config, ConfigError> {
        Config::new(listen.parse().unwrap(), ANY, ports, secrets, "SECRETS")
    }

    #[test]
    fn ports_must_be_a_range_above_zero() {
        assert!(matches!(
            config("127.0.0.1:0", (3000, 2000), None),
            Err(ConfigError::NoPorts {
                min: 3000,
                max: 2000
            })
        ));
        assert!(matches!(
            config("127.0.0.1:0", (0, 2000), None),
            Err(ConfigError::NoPorts { .. })
        ));
        assert_eq!(
            config("127.0.0.1:0", (2000, 2000), None).unwrap().ports,
            2000..=2000
        );
    }

    #[test]
    fn no_secret_only_on_loopback_and_each_secret_of_the_list_is_strong() {
        assert!(
            !config("127.0.0.1:0", (1024, 2000), Some(" "))
                .unwrap()
                .secret_required()
        );
        assert!(matches!(
            config("0.0.0.0:7835", (1024, 2000), None),
            Err(ConfigError::OpenRelay { .. })
        ));
        let two = config(
            "0.0.0.0:7835",
            (1024, 2000),
            Some("0123456789abcdef, fedcba9876543210"),
        )
        .unwrap();
        assert_eq!(two.secrets.len(), 2);
        let weak = config(
            "0.0.0.0:7835",
            (1024, 2000),
            Some("0123456789abcdef,hunter2"),
        );
        match weak {
            Err(ConfigError::WeakSecret(why)) => assert!(why.contains("in SECRETS"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
