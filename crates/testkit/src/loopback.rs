//! Serving an axum router on a loopback port until the handle is dropped, and ports
//! where nothing listens.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use reqwest::Url;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A router served on 127.0.0.1; it stops (gracefully) when this is dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

/// Serves `router` on a free loopback port.
pub async fn serve(router: Router) -> Server {
    serve_on(router, 0).await
}

/// Serves `router` on loopback `port` (0 picks a free one), so a stopped server can
/// come back where its clients expect it.
pub async fn serve_on(router: Router, port: u16) -> Server {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Server {
        addr,
        stop: Some(stop),
    }
}

impl Server {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// [`Server::url`] parsed.
    pub fn parsed_url(&self) -> Url {
        Url::parse(&self.url()).unwrap()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops it and gives the listener a moment to close.
    pub async fn stop(mut self) {
        self.signal_stop();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// A loopback port that was free a moment ago (nothing listens there now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A URL where nothing listens.
pub fn dead_url() -> Url {
    Url::parse(&format!("http://127.0.0.1:{}", free_port())).unwrap()
}
